"""Loading a model (ONNX file or PyTorch module) into Relax, with errors a user can act on.

``onnx.load`` on a broken file raises protobuf's ``DecodeError`` with no file name, and TVM's ONNX
importer fails deep in its converter table on an operator it lacks. :func:`load_onnx` turns each into
one line naming the file and what is wrong; everything it returns is a plain Relax module that
:func:`tvm_aie.build` takes.
"""

from __future__ import annotations

import os

import onnx
import tvm


class ModelLoadError(ValueError):
    """The model file cannot be read or imported."""


def load_onnx(model, shape: dict | None = None) -> tvm.IRModule:
    """An ONNX file (path) or ``ModelProto`` as a Relax module, its weights as constants.

    Weights stay constants (``keep_params_in_input=False``) so the partitioner can offload the
    layers that use them. ``shape`` overrides input shapes as TVM's importer allows.
    """
    from tvm.relax.frontend.onnx import from_onnx  # pylint: disable=import-outside-toplevel

    where = "model"
    if isinstance(model, (str, os.PathLike)):
        where = os.fspath(model)
        if not os.path.isfile(where):
            raise ModelLoadError(f"{where}: no such ONNX file")
        try:
            model = onnx.load(where)
        except Exception as err:  # protobuf's DecodeError and friends carry no context
            raise ModelLoadError(f"{where}: not a valid ONNX model ({type(err).__name__}: "
                                 f"{_first_line(err)})") from None
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as err:
        raise ModelLoadError(f"{where}: invalid ONNX model: {_first_line(err)}") from None
    supported = _importable_ops()
    missing = sorted({n.op_type for n in model.graph.node if n.op_type not in supported})
    if missing:
        raise ModelLoadError(f"{where}: TVM's ONNX importer has no converter for "
                             f"{', '.join(missing)}")
    _check_placeholder_outputs(model, where)
    return from_onnx(model, shape_dict=shape, keep_params_in_input=False)


def _check_placeholder_outputs(model: onnx.ModelProto, where: str) -> None:
    """TVM 0.27 imports LayerNormalization's optional Mean and InvStdDev outputs as placeholder
    scalars, so a model that uses them would run and give wrong numbers; refuse it instead."""
    used = {name for n in model.graph.node for name in n.input} | \
        {o.name for o in model.graph.output}
    for node in model.graph.node:
        if node.op_type == "LayerNormalization" and used & set(node.output[1:]):
            raise ModelLoadError(f"{where}: LayerNormalization {node.name or node.output[0]!r} "
                                 f"uses its Mean/InvStdDev outputs, which TVM's ONNX importer "
                                 f"does not compute")


def load_torch(module, *example_inputs, dynamic_shapes=None) -> tvm.IRModule:
    """A PyTorch module as a Relax module: ``torch.export`` then TVM's ``from_exported_program``.

    ``module`` is exported as it is (call ``.eval()`` first); ``example_inputs`` are tensors or
    numpy arrays; ``dynamic_shapes`` is passed to ``torch.export``. Weights become constants, as in
    :func:`load_onnx`. PyTorch's decompositions are not run: they turn each batched ``matmul``
    into reshape, broadcast and ``bmm``, and max-pooling into its with-indices form, which neither
    the partitioner's patterns nor the ONNX import of the same model have.
    """
    import torch  # pylint: disable=import-outside-toplevel
    from tvm.relax.frontend.torch import from_exported_program  # pylint: disable=import-outside-toplevel

    args = tuple(torch.as_tensor(x) for x in example_inputs)
    try:
        program = torch.export.export(module, args, dynamic_shapes=dynamic_shapes)
    except Exception as err:  # torch's export errors run to pages
        raise ModelLoadError(f"{type(module).__name__}: torch.export failed: "
                             f"{_first_line(err)}") from None
    try:
        return from_exported_program(program, unwrap_unit_return_tuple=True,
                                     run_ep_decomposition=False,
                                     custom_convert_map={"batch_norm.default": _torch_batch_norm})
    except ModelLoadError:
        raise
    except Exception as err:
        raise ModelLoadError(f"{type(module).__name__}: TVM's PyTorch importer failed: "
                             f"{_first_line(err)}") from None


def _torch_batch_norm(node, importer):
    """``aten.batch_norm`` (what ``nn.BatchNorm2d`` exports as without decompositions).

    TVM 0.27 converts it with the argument positions of ``_native_batch_norm_legit``, so it reads
    ``training`` as the momentum and the momentum (0.1) as epsilon, and normalises with batch
    statistics: the output is wrong. This reads ``(x, weight, bias, running_mean, running_var,
    training, momentum, eps, cudnn_enabled)`` as ATen defines them.
    """
    import numpy as np  # pylint: disable=import-outside-toplevel
    from tvm import relax  # pylint: disable=import-outside-toplevel

    x, weight, bias, mean, var, training, _momentum, eps = node.args[:8]
    if training:
        raise ModelLoadError("batch-norm in training mode: call module.eval() before export")
    data = importer.env[x]
    channels, dtype = int(data.ty.shape[1]), data.ty.dtype

    def arg(a, default):
        return importer.env[a] if a is not None else relax.const(np.full(channels, default), dtype)

    out = relax.op.nn.batch_norm(data, arg(weight, 1.0), arg(bias, 0.0), arg(mean, 0.0),
                                 arg(var, 1.0), axis=1, epsilon=eps, training=False)
    return importer.block_builder.emit(relax.TupleGetItem(importer.block_builder.emit(out), 0))


def _importable_ops() -> set:
    from tvm.relax.frontend.onnx.onnx_frontend import _get_convert_map  # pylint: disable=import-outside-toplevel

    return set(_get_convert_map())


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else "no details"
