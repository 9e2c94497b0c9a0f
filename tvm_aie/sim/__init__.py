"""The bundled AIE array simulator: runs an AIE program (:mod:`tvm_aie.codegen.program`) for one
inference, bit-exactly (``mode="functional"``) or counting cycles only (``mode="timing"``), and
reports cycles, stalls, bytes moved and MAC efficiency. It reads only the program and the device
catalog."""

from .array import MAX_CYCLES, check_loads, simulate
from .engine import CycleLimitError, DeadlockError, NoProgressError, SimulationError
from . import kernels_bmm, kernels_conv, kernels_rows  # noqa: F401  register their kernels
from .kernels import KERNELS, matmul_cycles
from .report import SimReport, SimResult

__all__ = ["simulate", "check_loads", "SimReport", "SimResult", "DeadlockError", "CycleLimitError",
           "SimulationError", "NoProgressError", "KERNELS", "matmul_cycles", "MAX_CYCLES"]
