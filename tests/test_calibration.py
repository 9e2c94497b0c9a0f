"""The simulator against published measurements: every row runs and is sourced, the table prints,
and the errors stay where the calibration left them (kernel rows within 10% median, the
end-to-end rows of whole published designs within the bounds below: see docs/simulator.md)."""

import numpy as np

from tvm_aie.sim.array import simulate
from tvm_aie.sim.calibration import SCOPE, calibrate, format_table, median_abs_error, rows
from tvm_aie.sim.workloads import dense_net_program

# Where the table stands (docs/simulator.md): a change to the model that moves a row past these
# fails here, so the table is re-read before it is accepted.
KERNEL_MEDIAN, END_TO_END_MEDIAN, ALL_MEDIAN, WORST = 0.10, 0.125, 0.10, 0.35


def test_table_rows_are_sourced_with_twelve_end_to_end():
    table = rows()
    assert len({r["id"] for r in table}) == len(table)
    for r in table:
        assert r["source"] and r["published"] > 0 and r["kind"] in SCOPE
    assert sum(r["kind"] == "network" for r in table) >= 12
    assert sum(SCOPE[r["kind"]] == "kernel" for r in table) >= 6


def test_simulated_vs_published_errors(capsys):
    results = calibrate()
    with capsys.disabled():
        print("\n" + format_table(results))
    kernel = [r for r in results if SCOPE[r["kind"]] == "kernel"]
    end_to_end = [r for r in results if SCOPE[r["kind"]] == "end-to-end"]
    assert median_abs_error(kernel) <= KERNEL_MEDIAN
    assert median_abs_error(end_to_end) <= END_TO_END_MEDIAN
    assert median_abs_error(results) <= ALL_MEDIAN
    assert max(abs(r["error"]) for r in results) <= WORST


def test_end_to_end_row_same_in_both_modes():
    """A rebuilt network gives the same cycles and first-output cycle whether it moves the bytes or
    only counts them."""
    program = dense_net_program([[16, 64], [64, 32], [32, 32], [32, 8]],
                                [[1, 4], [4, 2], [2, 2], [2, 1]], 8)
    rng = np.random.default_rng(0)
    inputs = {t.name: rng.integers(-128, 128, t.shape).astype(t.dtype)
              for t in program.ddr if t.role == "input"}
    functional = simulate(program, inputs, mode="functional").report
    timing = simulate(program, mode="timing").report
    assert (functional.cycles, functional.first_output) == (timing.cycles, timing.first_output)
    assert 0 < timing.first_output < timing.cycles
