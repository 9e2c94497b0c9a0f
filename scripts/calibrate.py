"""Print the simulator's calibration: each published measurement (tvm_aie/sim/calibration.json)
next to what the simulator gives for the same workload, the error, and the median |error|."""

from __future__ import annotations

import sys

from tvm_aie.sim.calibration import calibrate, format_table, median_abs_error

TARGET = 0.10  # median |error| the simulator must stay within (issue 3)


def main() -> int:
    results = calibrate()
    print(format_table(results))
    return 0 if median_abs_error(results) <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
