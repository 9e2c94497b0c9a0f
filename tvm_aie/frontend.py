"""Loading a model (ONNX file or PyTorch module) into Relax, with errors a user can act on.

``onnx.load`` on a broken file raises protobuf's ``DecodeError`` with no file name, and TVM's ONNX
importer fails deep in its converter table on an operator it lacks. :func:`load_onnx` turns each into
one line naming the file and what is wrong, and computes LayerNormalization's statistics outputs,
which TVM's importer would silently get wrong; everything it returns is a plain Relax module that
:func:`tvm_aie.build` takes.
"""

from __future__ import annotations

import os

import numpy as np
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
    try:
        return from_onnx(_layernorm_statistics(model), shape_dict=shape,
                         keep_params_in_input=False)
    except Exception as err:  # TVM's converters fail with their own (internal) errors
        raise ModelLoadError(f"{where}: TVM's ONNX importer cannot import it "
                             f"({type(err).__name__}: {_first_line(err)})") from None


def _layernorm_statistics(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with LayerNormalization's Mean and InvStdDev outputs computed by ONNX ops.

    TVM 0.27 imports these optional outputs as placeholder scalars, so a model that uses them
    would run and give wrong numbers. Where they are used, they are computed next to the node
    (ReduceMean, Sub, Mul, Add, Sqrt, Reciprocal, in float32 as ``stash_type`` 1 says) and the
    node keeps only Y, which TVM imports right. Models that use only Y are returned as they are.
    """
    used = {name for n in model.graph.node for name in n.input} | \
        {o.name for o in model.graph.output}
    if not any(n.op_type == "LayerNormalization" and used & set(n.output[1:])
               for n in model.graph.node):
        return model
    model = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type for v in
             [*model.graph.value_info, *model.graph.input, *model.graph.output]}
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    nodes = []
    for node in model.graph.node:
        nodes.append(node)
        if node.op_type != "LayerNormalization" or not used & set(node.output[1:]):
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        rank = len(types[node.input[0]].shape.dim)
        axes = list(range(attrs.get("axis", -1) % rank, rank))
        p = f"{node.output[0]}__stats"

        def add(op, inputs, out, **kw):
            nodes.append(onnx.helper.make_node(op, inputs, [out], **kw))
            return out

        def reduce_mean(x, out):
            if opset >= 18:
                model.graph.initializer.append(onnx.numpy_helper.from_array(
                    np.array(axes, np.int64), f"{p}_axes"))
                return add("ReduceMean", [x, f"{p}_axes"], out)
            return add("ReduceMean", [x], out, axes=axes)

        x = node.input[0]
        if types[x].elem_type != onnx.TensorProto.FLOAT:
            x = add("Cast", [x], f"{p}_x", to=onnx.TensorProto.FLOAT)
        model.graph.initializer.append(onnx.numpy_helper.from_array(
            np.array(attrs.get("epsilon", 1e-5), np.float32), f"{p}_eps"))
        mean = reduce_mean(x, node.output[1] if len(node.output) > 1 and node.output[1]
                           else f"{p}_mean")
        centred = add("Sub", [x, mean], f"{p}_centred")
        var = reduce_mean(add("Mul", [centred, centred], f"{p}_sq"), f"{p}_var")
        std = add("Sqrt", [add("Add", [var, f"{p}_eps"], f"{p}_var_eps")], f"{p}_std")
        if len(node.output) > 2 and node.output[2]:
            add("Reciprocal", [std], node.output[2])
        del node.output[1:]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model


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
