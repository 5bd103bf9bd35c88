"""The command line of ``python -m fastgd.benchmarks.first_fit`` (nothing is timed here)."""

import pytest

from fastgd.benchmarks import first_fit


def test_defaults_measure_every_estimator_three_times():
    args = first_fit.parse_args([])
    assert args.repeats == 3
    assert args.only is None


def test_repeats_and_only_are_parsed():
    args = first_fit.parse_args(["--repeats", "5", "--only", "GDClassifier"])
    assert args.repeats == 5
    assert args.only == "GDClassifier"


def test_only_matching_nothing_is_an_error(capsys):
    with pytest.raises(SystemExit, match="no estimator row contains"):
        first_fit.main(["--repeats", "1", "--only", "no such estimator"])


def test_table_without_the_reference_row_leaves_the_ratios_blank():
    row = {"cold": 5.0, "warm": 2.0, "cold cpu": 4.5, "warm cpu": 1.5}
    table = first_fit.format_table({"GDRegressor, mini-batch": row})
    assert "GDRegressor, mini-batch" in table
    assert "5.00" in table and "2.00" in table
