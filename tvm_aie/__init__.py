"""tvm-aie: compile neural networks for AMD AI Engine arrays from TVM, and run them on a simulator."""

from .target import Device, UnknownDeviceError, get_device, register_targets

register_targets()
