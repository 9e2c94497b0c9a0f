"""The simulator against published AIE-ML measurements: every row runs, the table prints, and the
median |error| is within 10%."""

from tvm_aie.sim.calibration import calibrate, format_table, median_abs_error, rows


def test_table_has_eight_sourced_rows():
    table = rows()
    assert len(table) >= 8
    assert len({r["id"] for r in table}) == len(table)
    for r in table:
        assert r["source"] and r["published"] > 0 and r["kind"] in ("kernel", "pack", "layer")


def test_simulated_vs_published_median_error_within_ten_percent(capsys):
    results = calibrate()
    with capsys.disabled():
        print("\n" + format_table(results))
    assert median_abs_error(results) <= 0.10
