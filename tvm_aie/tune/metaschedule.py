"""The AIE tuner's pieces as MetaSchedule components, so ``tvm.s_tir.meta_schedule`` can drive it.

MetaSchedule explores a space by replaying a trace with new sampling decisions; the space function
itself runs once. The dense template cannot be replayed that way: how far it pads K and N depends
on the cascade and ``n_par`` knobs, and ``pad_einsum`` takes integers, not random variables. So
the space here (:func:`space`) samples each knob with ``sample_categorical`` and annotates the
matmul block with the sampled random variable (``aie.knob.<name>``), which replay does update;
:class:`AIEBuilder` reads the knobs back from the module (builders never see the trace), rejects
illegal points before anything is simulated, and applies the real template to the original
PrimFunc. :class:`AIERunner` simulates in timing mode, :class:`AIEFeatures` gives ``XGBModel`` the
features of :mod:`tvm_aie.tune.features`, and :class:`MutateKnob` mutates every categorical knob
(the stock mutators only mutate tile sizes, unroll and parallel decisions). Records go to
MetaSchedule's own ``JSONDatabase`` in the work dir. Why the native search is the default anyway:
see docs/tuning.md.
"""

from __future__ import annotations

import json
import os
import tempfile

import numpy as np
import tvm
import tvm_ffi
from tvm.s_tir import meta_schedule as ms
from tvm.ir.utils import derived_object
from tvm.s_tir import SBlock

from ..codegen.program import Program
from ..schedules import dense
from ..target import get_device
from .features import features
from .measure import chain_program, simulate_cycles

KNOB = "aie.knob."
TASK = "aie.task"
KNOBS = ("tm", "n_par", "cascade", "double_buffer_a", "double_buffer_c")


def knob_values(task) -> dict:
    """Each knob's values over the task's legal space (the box MetaSchedule samples from)."""
    configs = task.space().configs
    return {k: sorted({int(getattr(c, k)) for c in configs}) for k in KNOBS}


def space(task, seed: int = 0) -> ms.space_generator.ScheduleFn:
    """A ``ScheduleFn`` sampling every knob (see the module docstring), mutated by MutateKnob."""
    values = knob_values(task)
    info = json.dumps({"workload": dict(task.workload.__dict__), "device": task.device})

    def sample(sch: tvm.s_tir.Schedule) -> None:
        block = sch.get_sblock(sch.get(sch.get_child_blocks(sch.get_sblock("root"))[0]).name_hint)
        sch.annotate(block, TASK, info)
        for name, vals in values.items():
            rv = sch.sample_categorical(candidates=vals, probs=[1.0 / len(vals)] * len(vals))
            sch.annotate(block, KNOB + name, rv)

    return ms.space_generator.ScheduleFn(sample, sch_rules=[], postprocs=[],
                                         mutator_probs={MutateKnob(seed): 1.0})


def read_knobs(mod: tvm.IRModule):
    """(workload, config, device name) from the annotations of a module :func:`space` made."""
    found = []

    def visit(block):
        if TASK in block.annotations:
            found.append(block.annotations)

    tvm_ffi.structural_walk(mod["main"].body, [(SBlock, visit)])
    if len(found) != 1:
        raise ValueError("not a module from tvm_aie.tune.metaschedule.space (no aie.task block)")
    ann = found[0]
    info = json.loads(str(ann[TASK]))
    cfg = dense.DenseConfig.from_dict({k: int(ann[KNOB + k]) for k in KNOBS})
    return dense.DenseWorkload(**info["workload"]), cfg, info["device"]


@derived_object
class MutateKnob(ms.mutator.PyMutator):
    """Move one sampled knob to a neighbouring value (or, one time in four, to any value)."""

    def __init__(self, seed: int = 0):
        super().__init__()
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    def _initialize_with_tune_context(self, context) -> None:
        pass

    def apply(self, trace, _rand_state):
        knobs = [(inst, int(dec)) for inst, dec in trace.decisions.items()
                 if inst.kind.name == "SampleCategorical" and len(inst.attrs[0]) > 1]
        if not knobs:
            return None
        inst, old = knobs[self.rng.integers(len(knobs))]
        n = len(inst.attrs[0])
        new = int(self.rng.integers(n)) if self.rng.random() < 0.25 else \
            min(n - 1, max(0, old + (1 if self.rng.random() < 0.5 else -1)))
        if new == old:
            new = (old + 1) % n
        return trace.with_decision(inst, new, remove_postproc=True)

    def clone(self):
        twin = MutateKnob(self.seed)
        twin.rng.bit_generator.state = self.rng.bit_generator.state
        return twin


@derived_object
class AIEFeatures(ms.feature_extractor.PyFeatureExtractor):
    """One feature row per candidate, from its knob annotations."""

    def extract_from(self, context, candidates):
        rows = []
        for cand in candidates:
            wl, cfg, dev = read_knobs(cand.sch.mod)
            rows.append(tvm.runtime.tensor(
                np.asarray([features(wl, cfg, get_device(dev))], dtype=np.float32)))
        return rows


@derived_object
class AIEBuilder(ms.builder.PyBuilder):
    """Knobs -> legality check -> dense template -> AIE program file (the artifact)."""

    def __init__(self):
        super().__init__()
        self.rejected: dict = {}

    def build(self, build_inputs):
        results = []
        for inp in build_inputs:
            wl, cfg, dev = read_knobs(inp.mod)
            device = get_device(dev)
            try:
                dense.check(wl, cfg, device)
            except dense.TilingError as e:
                self.rejected[e.reason] = self.rejected.get(e.reason, 0) + 1
                results.append(ms.builder.BuilderResult(None, f"rejected ({e.reason}): {e}"))
                continue
            # one directory per artifact: MetaSchedule's callback removes the artifact's directory
            path = os.path.join(tempfile.mkdtemp(prefix="tvm-aie-ms-"), "program.aie")
            with open(path, "wb") as f:
                f.write(chain_program([wl], [cfg], device).to_bytes())
            results.append(ms.builder.BuilderResult(path, None))
        return results


@derived_object
class _Done(ms.runner.PyRunnerFuture):
    def __init__(self, result):
        super().__init__()
        self.res = result

    def done(self) -> bool:
        return True

    def result(self):
        return self.res


@derived_object
class AIERunner(ms.runner.PyRunner):
    """Simulate each artifact in timing mode; ``run_secs`` = cycles / device clock.

    ``cycles`` keeps every measurement in order, for tuning curves.
    """

    def __init__(self):
        super().__init__()
        self.cycles: list = []

    def run(self, runner_inputs):
        futures = []
        for inp in runner_inputs:
            with open(inp.artifact_path, "rb") as f:
                program = Program.from_bytes(f.read())
            cycles = simulate_cycles(program)
            self.cycles.append(cycles)
            secs = cycles / get_device(program.device).clock_hz
            futures.append(_Done(ms.runner.RunnerResult([secs], None)))
        return futures


def tune(task, work_dir: str, trials: int, *, seed: int = 0, batch: int = 8):
    """Tune one task with MetaSchedule (evolutionary search, XGBModel on AIE features).

    Returns ``(database, runner, builder)``: the runner's ``cycles`` is the measurement order,
    the builder's ``rejected`` counts the points refused before measurement.
    """
    builder, runner = AIEBuilder(), AIERunner()
    ctx = ms.TuneContext(
        mod=tvm.IRModule({"main": dense.dense_prim_func(task.workload)}),
        target=tvm.target.Target("llvm"), space_generator=space(task, seed),
        search_strategy=ms.search_strategy.EvolutionarySearch(
            population_size=64, init_min_unmeasured=16, genetic_num_iters=2),
        task_name=task.key, rand_state=seed, num_threads=1)
    db = ms.tune_tasks(
        tasks=[ctx], task_weights=[1.0], work_dir=work_dir, max_trials_global=trials,
        num_trials_per_iter=batch, builder=builder, runner=runner, database="json",
        cost_model=ms.cost_model.XGBModel(extractor=AIEFeatures(), num_warmup_samples=batch,
                                          num_tuning_cores=1),
        measure_callbacks="default", task_scheduler="round-robin")
    return db, runner, builder
