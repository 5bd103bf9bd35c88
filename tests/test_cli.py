"""The command line: ``fastgd bench`` and ``fastgd demo``."""

import io
import json
import math

import pytest

from fastgd import _bench
from fastgd._cli import main


def _tiny_gd_suite(quick):
    from bench import gd_regressor

    results = gd_regressor.measure(2_000, 5, repeats=1, cold_start=False)
    return results, gd_regressor.format_table(results)


@pytest.fixture
def tiny_suites(monkeypatch):
    """The GDRegressor suite on a tiny problem, and a canned FusionClassifier suite."""
    if _bench.find_bench_dir() is None:
        pytest.skip("not a source checkout: bench/ is absent")
    canned_rows = [
        {"workload": "mlp epoch", "implementation": "fastgd", "seconds": 0.1, "ratio": None},
        {"workload": "mlp epoch", "implementation": "sklearn", "seconds": 0.3, "ratio": 3.0},
    ]
    suites = [
        _bench.Suite(
            "gd_regressor", "GDRegressor vs SGDRegressor", _tiny_gd_suite, _bench._gd_ratios
        ),
        _bench.Suite(
            "fusion", "canned", lambda quick: (canned_rows, "table"), _bench._fusion_ratios
        ),
    ]
    monkeypatch.setattr(_bench, "SUITES", suites)
    return suites


def test_bench_prints_tables_and_writes_json(tiny_suites, tmp_path, capsys):
    path = tmp_path / "bench.json"
    assert main(["bench", "--quick", "--json", str(path)]) == 0
    captured = capsys.readouterr()
    assert "## GDRegressor vs SGDRegressor" in captured.out
    assert "GDRegressor (cython) marginal epoch vs SGDRegressor" in captured.out
    assert "FusionClassifier mlp epoch vs sklearn" in captured.out
    # The progress line names each suite and reports when it is done.
    assert "[1/2] GDRegressor vs SGDRegressor ... done in" in captured.err
    assert "[2/2] canned ... done in" in captured.err
    report = json.loads(path.read_text())
    assert report["quick"] is True
    assert set(report["suites"]) == {"gd_regressor", "fusion"}
    assert report["suites"]["gd_regressor"]["n_samples"] == 2_000
    ratios = {r["measurement"]: r["ratio"] for r in report["ratios"]}
    assert ratios["FusionClassifier mlp epoch vs sklearn"] == 3.0
    gd = [r for r in report["ratios"] if r["suite"] == "gd_regressor"]
    assert len(gd) == 4
    # Real timings on a tiny problem: a marginal epoch (difference of two fit
    # times) can come out at or below zero in noise; one-epoch fits cannot.
    assert all(math.isfinite(r["ratio"]) for r in gd)
    assert all(r["ratio"] > 0 for r in gd if "one-epoch fit" in r["measurement"])
    assert "numpy" in report["versions"]


def test_bench_runs_only_the_suites_asked_for(tiny_suites, capsys):
    assert main(["bench", "--only", "fusion"]) == 0
    captured = capsys.readouterr()
    assert "[1/1] canned" in captured.err
    assert "GDRegressor" not in captured.out


def test_bench_plot(tiny_suites, tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "ratios.png"
    assert main(["bench", "--only", "fusion", "--plot", str(path)]) == 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_without_a_source_checkout_says_what_to_do(monkeypatch):
    monkeypatch.setattr(_bench, "find_bench_dir", lambda: None)
    err = io.StringIO()
    assert _bench.run_bench(quick=True, err=err, out=io.StringIO()) is None
    assert "source" in err.getvalue() and "bench/" in err.getvalue()
    monkeypatch.setattr("sys.stderr", err)
    assert main(["bench", "--quick"]) == 1


def test_gd_ratio_labels():
    results = {
        "ratios": {
            "one-epoch fit: sklearn / fastgd numba": 2.0,
            "minibatch(256) epoch / X@w, shuffled": 9.0,  # not a comparison with sklearn
        }
    }
    assert _bench._gd_ratios(results) == [
        ("GDRegressor (numba) one-epoch fit vs SGDRegressor", 2.0)
    ]


def test_demo_runs_from_any_folder(tmp_path):
    import re
    import subprocess
    import sys

    completed = subprocess.run(
        [sys.executable, "-m", "fastgd", "demo"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    out = completed.stdout
    for name in ("GDRegressor", "FusionClassifier", "MultiTaskRegressor"):
        assert f"fastgd.{name}" in out
    for counterpart in ("SGDRegressor", "MLPClassifier", "RidgeCV"):
        assert counterpart in out
    accuracies = [float(a) for a in re.findall(r"acc (\d\.\d+)", out)]
    assert len(accuracies) == 2 and min(accuracies) > 0.9, accuracies
    r2 = [float(v) for v in re.findall(r"R² +(-?\d\.\d+)", out)]
    assert len(r2) == 4 and min(r2[:2]) > 0.3, r2  # diabetes, both libraries
    assert "Demo finished" in out
