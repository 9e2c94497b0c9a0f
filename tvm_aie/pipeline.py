"""The ``aie`` Relax pipeline and :func:`build`, the front door of tvm-aie.

Pipeline: count the model's MACs (for the report) → partition the subgraphs the array runs →
compile each to an AIE program and call it through ``aie.run`` → TVM's default CPU build pipeline
for everything else. Both make one :class:`~tvm_aie.options.CompileOptions` and pass it on.
"""

from __future__ import annotations

import tvm
from tvm import relax

from .codegen import relax_ext  # noqa: F401  registers relax.ext.aie
from .codegen.layers import count_macs
from .offload import offload_to_aie
from .options import CompileOptions
from .partition import partition_for_aie
from .shapes import bind_input_shapes, log_unbound_inputs
from .target import device_of_target, get_device


def offload(mod: tvm.IRModule, options: CompileOptions) -> tvm.IRModule:
    """Partition and compile the offloaded subgraphs; the result still needs the CPU pipeline.
    A tuning database that is missing or holds no record is an error here, before anything is
    compiled."""
    if options.tuning_db is not None:
        from .tune.database import Database  # pylint: disable=import-outside-toplevel

        Database.existing(options.tuning_db)
    log_unbound_inputs(mod)
    macs = count_macs(mod)
    return offload_to_aie(options, macs)(partition_for_aie(mod, options.device))


def aie_pipeline(device: str | None = None, **options) -> tvm.transform.Pass:
    """Partition → AIE codegen → the default CPU pipeline. ``device`` overrides the target's;
    ``options`` are :class:`~tvm_aie.options.CompileOptions` fields, e.g.
    ``relax.get_pipeline("aie", precision="bf16")``."""

    @tvm.transform.module_pass(opt_level=0, name="AIEPipeline")
    def _pipeline(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        dev = device_of_target(device or tvm.target.Target.current(allow_none=True))
        opts = CompileOptions(device=dev.name, **options)
        return relax.get_pipeline("default")(offload(mod, opts))

    return _pipeline


def register_pipeline() -> None:
    """Make ``tvm.compile(..., relax_pipeline="aie")`` work (registration raises if repeated)."""
    from tvm.relax.pipeline import PIPELINE_MAP  # pylint: disable=import-outside-toplevel

    if "aie" not in PIPELINE_MAP:
        relax.register_pipeline("aie")(aie_pipeline)


def build(mod: tvm.IRModule, target="aie", params: dict | None = None, tuning_db=None,
          io: str = "ddr", precision: str | None = None, configs: dict | None = None,
          input_shapes: dict | None = None):
    """Compile a Relax module for an AIE target (the shape of the old ``relay.build``).

    ``params`` (name -> array) are bound into ``main`` first, so weights become constants the
    partitioner can offload. ``tuning_db``: path of a ``tvm-aie tune`` database whose best configs
    replace the default heuristic (see :mod:`tvm_aie.tune.apply`). ``io``: how dense chains' inputs
    and outputs reach the array, ``"ddr"`` (shim DMA over the NoC) or ``"pl"`` (the programmable
    logic streams them through the shims' PL ports; conv, batched-matmul and row-wise programs
    still use DDR). ``precision="bf16"``: fp32 layers (dense, conv, batched matmul, row-wise) run
    in bfloat16 on the array (bf16 weights and activations, float32 accumulation; the host casts
    at the boundary; a device without bf16 keeps fp32); the default keeps fp32. ``configs``:
    ``{layer index: config}`` pinned in every offloaded function instead of a database's.
    ``input_shapes``: input name -> shape, binding ``main``'s symbolic dimensions (a dynamic
    batch) before partitioning (:func:`tvm_aie.shapes.bind_input_shapes`); an input left
    symbolic runs on the CPU and the log says so. Returns a Relax VM executable; offloaded subgraphs run on the bundled simulator when called.
    """
    if isinstance(target, str):
        tag = target.split()[0] if target.strip() else target
        if tag.startswith(("aie", "npu")):
            get_device(tag)  # an unknown device fails here, listing the known ones
        target = tvm.target.Target(target)
    options = CompileOptions(device=device_of_target(target).name, io=io,
                             precision=precision or "fp32", tuning_db=tuning_db,
                             configs=configs or ())
    if params:
        mod = relax.transform.BindParams("main", params)(mod)
    mod = bind_input_shapes(mod, input_shapes)
    return compile_lowered(offload(mod, options), target)


def compile_lowered(lowered: tvm.IRModule, target) -> tvm.runtime.Executable:
    """Build an offloaded module for the host; it keeps ``lowered`` so it can be saved as data."""
    ex = tvm.compile(lowered, target=target, relax_pipeline="default")
    ex.aie_lowered, ex.aie_target = lowered, target
    return ex
