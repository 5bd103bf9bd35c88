"""The command line: ``fastgd bench``, ``fastgd demo``, ``python -m fastgd``.

The commands run from an installed wheel in ``test_wheel.py``.
"""

import json
import math
import sys

import pytest

from fastgd._cli import main
from fastgd.benchmarks import runner


def _tiny_gd_suite(quick):
    from fastgd.benchmarks import gd_regressor

    results = gd_regressor.measure(2_000, 5, repeats=1, cold_start=False)
    return results, gd_regressor.format_table(results)


@pytest.fixture
def tiny_suites(monkeypatch):
    """The GDRegressor suite on a tiny problem, and a canned FusionClassifier suite."""
    canned_rows = [
        {"workload": "mlp epoch", "implementation": "fastgd", "seconds": 0.1, "ratio": None},
        {"workload": "mlp epoch", "implementation": "sklearn", "seconds": 0.3, "ratio": 3.0},
    ]
    suites = [
        runner.Suite(
            "gd_regressor", "GDRegressor vs SGDRegressor", _tiny_gd_suite, runner._gd_ratios
        ),
        runner.Suite(
            "fusion", "canned", lambda quick: (canned_rows, "table"), runner._fusion_ratios
        ),
    ]
    monkeypatch.setattr(runner, "SUITES", suites)
    return suites


def test_bench_prints_tables_and_writes_json(tiny_suites, tmp_path, capsys):
    path = tmp_path / "bench.json"
    assert main(["bench", "--quick", "--json", str(path)]) == 0
    captured = capsys.readouterr()
    assert "## GDRegressor vs SGDRegressor" in captured.out
    assert "GDRegressor (cython) marginal epoch vs SGDRegressor" in captured.out
    assert "FusionClassifier mlp epoch vs sklearn" in captured.out
    # tqdm's progress line counts the suites; each reports when it is done.
    assert "[1/2] GDRegressor vs SGDRegressor: done in" in captured.err
    assert "[2/2] canned: done in" in captured.err
    assert "fastgd bench: 100%" in captured.err and "2/2" in captured.err
    assert "## Environment" in captured.out and "blas: " in captured.out
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
    assert any(pool["user_api"] == "blas" for pool in report["threadpools"])


def test_bench_runs_only_the_suites_asked_for(tiny_suites, capsys):
    assert main(["bench", "--only", "fusion"]) == 0
    captured = capsys.readouterr()
    assert "[1/1] canned: done in" in captured.err
    assert "GDRegressor" not in captured.out


def test_bench_plot(tiny_suites, tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "ratios.png"
    assert main(["bench", "--only", "fusion", "--plot", str(path)]) == 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_plot_without_matplotlib_says_what_to_do(tiny_suites, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails
    assert main(["bench", "--only", "fusion", "--plot", "ratios.png"]) == 1
    assert "--plot needs matplotlib: pip install 'fastgd[plot]'" in capsys.readouterr().err


def test_environment_record_names_the_blas_in_use():
    from threadpoolctl import threadpool_info

    record = runner.environment()
    assert record["threadpools"] == threadpool_info()
    blas = [pool for pool in record["threadpools"] if pool["user_api"] == "blas"]
    assert blas, "NumPy's BLAS is loaded once fastgd and NumPy are imported"
    lines = runner.describe_environment(record)
    assert any(line.startswith(f"blas: {blas[0]['internal_api']}") for line in lines)
    assert lines[0].startswith(f"fastgd {record['versions']['fastgd']}, python ")


def test_gd_ratio_labels():
    results = {
        "ratios": {
            "one-epoch fit: sklearn / fastgd numba": 2.0,
            "minibatch(256) epoch / X@w, shuffled": 9.0,  # not a comparison with sklearn
        }
    }
    assert runner._gd_ratios(results) == [
        ("GDRegressor (numba) one-epoch fit vs SGDRegressor", 2.0)
    ]


def test_demo_thread_budget_holds_for_every_library_and_is_restored():
    import numba
    from threadpoolctl import threadpool_info

    from fastgd._demo import thread_budget

    before = numba.get_num_threads()
    with thread_budget(1):
        assert numba.get_num_threads() == 1
        assert {pool["num_threads"] for pool in threadpool_info()} == {1}
    assert numba.get_num_threads() == before


def test_demo_names_the_backend_of_gd_regressor(monkeypatch):
    from fastgd import GDRegressor, _demo, _linear_base

    assert _demo.gd_regressor_backend(GDRegressor(backend="numba")) == "numba"
    monkeypatch.setattr(_linear_base, "cython_available", lambda: False)
    assert _demo.gd_regressor_backend(GDRegressor()) == "numba"
    assert "Cython extension is not built" in _demo._describe_backend("numba")
    monkeypatch.setattr(_linear_base, "cython_available", lambda: True)
    assert _demo.gd_regressor_backend(GDRegressor()) == "cython"


def test_version_names_the_package_folder(capsys, monkeypatch):
    import os

    import fastgd

    monkeypatch.setenv("COLUMNS", "20")  # a narrow terminal: the line stays whole
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    expected = f"fastgd {fastgd.__version__} ({os.path.dirname(fastgd.__file__)})"
    assert capsys.readouterr().out.strip() == expected


def test_python_m_fastgd_prefers_an_installed_copy_to_the_current_folder(tmp_path, monkeypatch):
    import os

    from fastgd import __main__ as entry

    running_root = os.path.dirname(os.path.dirname(os.path.abspath(entry.__file__)))
    installed = tmp_path / "site-packages" / "fastgd"
    installed.mkdir(parents=True)
    monkeypatch.setattr(entry, "installed_package_dir", lambda: str(installed))
    monkeypatch.chdir(running_root)  # the running copy is the current folder's
    assert entry.shadowed_installation() == str(installed)
    monkeypatch.chdir(tmp_path)  # elsewhere: sys.path does not start with that copy
    assert entry.shadowed_installation() is None
    monkeypatch.chdir(running_root)
    monkeypatch.setattr(entry, "installed_package_dir", lambda: None)  # editable or none
    assert entry.shadowed_installation() is None


def test_the_installed_copy_is_looked_for_outside_the_current_folder(tmp_path, monkeypatch):
    # A checkout after `pip install .`: its source tree and the egg-info that
    # pip leaves there, in the current folder; the installed package in
    # site-packages.
    from fastgd import __main__ as entry

    checkout, site_packages = tmp_path / "checkout", tmp_path / "site-packages"
    for folder in (checkout / "fastgd", checkout / "fastgd.egg-info", site_packages / "fastgd"):
        folder.mkdir(parents=True)
    (checkout / "fastgd" / "__init__.py").touch()
    (site_packages / "fastgd" / "__init__.py").touch()
    monkeypatch.chdir(checkout)
    monkeypatch.setattr(sys, "path", [str(checkout), str(site_packages)])
    assert entry.installed_package_dir() == str(site_packages / "fastgd")
    monkeypatch.setattr(sys, "path", ["", str(site_packages)])  # python -c's current folder
    assert entry.installed_package_dir() == str(site_packages / "fastgd")
    monkeypatch.setattr(sys, "path", [str(checkout)])  # not installed anywhere else
    assert entry.installed_package_dir() is None
