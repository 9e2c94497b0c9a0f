"""Loading a model file into Relax, with errors a user can act on.

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
    return from_onnx(model, shape_dict=shape, keep_params_in_input=False)


def _importable_ops() -> set:
    from tvm.relax.frontend.onnx.onnx_frontend import _get_convert_map  # pylint: disable=import-outside-toplevel

    return set(_get_convert_map())


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else "no details"
