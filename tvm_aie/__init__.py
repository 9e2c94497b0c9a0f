"""tvm-aie: compile neural networks for AMD AI Engine arrays from TVM, and run them on a simulator.

``import tvm`` loads this package through the ``tvm.backends`` entry point, which registers the
target tags (``aie``, ``aie-ml/vek280``, ...), the ``aie`` Relax pipeline, ``relax.ext.aie`` and the
``aie.run`` runtime function.
"""

from . import runtime  # noqa: F401  registers aie.run
from .executable import load, save
from .frontend import ModelLoadError, load_onnx, load_torch
from .partition import partition_for_aie
from .pipeline import build, register_pipeline
from .report import Report, report
from .target import Device, UnknownDeviceError, get_device, register_targets

register_targets()
register_pipeline()

__all__ = ["build", "report", "Report", "save", "load", "load_onnx", "load_torch", "ModelLoadError",
           "partition_for_aie", "get_device", "Device", "UnknownDeviceError"]
