"""fastgd installed from its wheel, outside the checkout, works as the README says.

One test builds the wheel, installs it into a fresh virtual environment
(outside the checkout, reusing the running environment's dependencies so
nothing is downloaded) and runs every command of the ``fastgd`` command
line from there: the README's ``python -m fastgd demo`` from the checkout
root (which must run the installed package, with its compiled Cython
extension, not the source tree), ``fastgd compile --list``, ``fastgd compile``,
``fastgd bench`` and ``fastgd --version`` from another folder.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# A few thousand rows instead of --quick's 100,000, so that the installed
# benchmark suite runs in seconds; everything else is the installed code.
TINY_BENCH = """
import sys
from fastgd.benchmarks import gd_regressor
gd_regressor.QUICK_SIZE = (2_000, 5)
from fastgd._cli import main
sys.exit(main(sys.argv[1:]))
"""


def _run(command, cwd, env, timeout=900):
    completed = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert completed.returncode == 0, (command, completed.stdout[-2000:], completed.stderr[-3000:])
    return completed


def _numba_cache_files(folder):
    return {
        str(path): path.stat().st_mtime_ns
        for pattern in ("*.nbi", "*.nbc")
        for path in Path(folder).rglob(pattern)
    }


def build_wheel(out_dir):
    """Build fastgd's wheel from a copy of the checkout, with the running environment's tools.

    The copy leaves out what earlier builds left in the checkout (``build/``,
    whose stale files a wheel would pick up, compiled extensions, caches).
    """
    source = out_dir / "source"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git",
            ".ci-venv*",
            ".venv",
            "build",
            "dist",
            "*.egg-info",
            "*.so",
            "__pycache__",
            ".pytest_cache",
            ".benchmarks",
        ),
    )
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--quiet",
            "--wheel-dir",
            str(out_dir),
            str(source),
        ],
        cwd=out_dir,
        env=os.environ.copy(),
    )
    (wheel,) = Path(out_dir).glob("fastgd-*.whl")
    return wheel


def make_environment(folder, wheel):
    """A fresh virtual environment holding the wheel; returns its Python and its site-packages.

    The environment sees the running environment's installed distributions
    (listed in a ``.pth`` file, after its own), so that installing the wheel
    downloads nothing; the running environment's own copy of fastgd (an
    editable install of the checkout) stays hidden, because only the folders
    are added, not the ``.pth`` files inside them.
    """
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    python = folder / "bin" / "python"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--no-deps",
            "--no-index",
            "--quiet",
            str(wheel),
        ],
        cwd=folder,
        env=os.environ.copy(),
    )
    site_packages = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    running = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    running |= {entry for entry in sys.path if entry.endswith(("site-packages", "dist-packages"))}
    (site_packages / "running_environment.pth").write_text("\n".join(sorted(running)) + "\n")
    return python, site_packages


@pytest.mark.slow
def test_every_command_runs_from_an_installed_wheel(tmp_path_factory):
    work = tmp_path_factory.mktemp("wheel")
    assert ROOT not in work.parents
    wheel = build_wheel(work)
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert any(re.fullmatch(r"fastgd/_kernels/linear/_sgd_fast\..*\.so", n) for n in names)
    assert "fastgd/benchmarks/runner.py" in names  # `fastgd bench` ships with the package
    assert not [n for n in names if n.endswith((".nbi", ".nbc", ".c")) or "__pycache__" in n]
    assert not [n for n in names if n.startswith(("tests/", "bench/"))]

    python, site_packages = make_environment(work / "venv", wheel)
    installed = site_packages / "fastgd"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "NUMBA_CACHE_DIR")}
    elsewhere = work / "elsewhere"
    elsewhere.mkdir()

    # The README's first command, from a checkout's root (the copy the wheel
    # was built from, which no other test writes to): the installed package
    # runs (not ./fastgd), on its Cython extension, and writes no Numba cache
    # into the checkout.
    checkout = work / "source"
    checkout_cache = _numba_cache_files(checkout / "fastgd")
    demo = _run([str(python), "-m", "fastgd", "demo"], cwd=checkout, env=env)
    assert f"running the installed fastgd ({installed})" in demo.stderr
    out = demo.stdout
    assert out.splitlines()[0].endswith(f"({installed})")
    assert "Every library runs on 1 thread" in out
    assert "fastgd.GDRegressor ran on the Cython backend" in out
    assert "fastgd.FusionClassifier ran on fastgd's compiled layer kernels" in out
    assert "fastgd.MultiTaskRegressor ran on fastgd's compiled layer kernels" in out
    for counterpart in ("SGDRegressor", "MLPClassifier", "RidgeCV"):
        assert counterpart in out
    accuracies = [float(a) for a in re.findall(r"acc (\d\.\d+)", out)]
    assert len(accuracies) == 2 and min(accuracies) > 0.9, accuracies
    r2 = [float(v) for v in re.findall(r"R² +(-?\d\.\d+)", out)]
    assert len(r2) == 4 and min(r2[:2]) > 0.3, r2  # diabetes, both libraries
    assert re.search(r"Demo finished in \d+\.\d s\.", out)
    assert _numba_cache_files(checkout / "fastgd") == checkout_cache
    # Its network fits run on ahead-of-time kernels only: no Numba kernel to cache.
    assert not _numba_cache_files(installed)

    fastgd = str(python.parent / "fastgd")  # the console script
    version = _run([fastgd, "--version"], cwd=elsewhere, env=env)
    assert version.stdout.strip().endswith(f"({installed})")

    # --list reads what the demo cached and compiles nothing.
    installed_cache = _numba_cache_files(installed)
    listing = _run([fastgd, "compile", "--list"], cwd=elsewhere, env=env)
    rows = dict(line.split() for line in listing.stdout.splitlines()[1:] if line.startswith("  "))
    assert int(rows["network.sparse_dense.csr_rows_to_dense"]) == 0
    assert int(rows["linear.sgd_numba.sgd_steps"]) == 0  # the demo's GDRegressor ran Cython
    assert f"Cache: {installed / '_kernels'}" in listing.stdout
    assert _numba_cache_files(installed) == installed_cache

    # MultiTaskRegressor: the estimator whose kernels (for sparse input) compile in
    # seconds.
    compiled = _run(
        [fastgd, "compile", "--estimator", "MultiTaskRegressor"], cwd=elsewhere, env=env
    )
    assert "MultiTaskRegressor (sparse input): " in compiled.stdout
    assert re.search(r"\d+ kernels: [1-9]\d* signatures compiled", compiled.stdout)

    report_path = elsewhere / "bench.json"
    bench = _run(
        [
            str(python),
            "-c",
            TINY_BENCH,
            "bench",
            "--quick",
            "--only",
            "gd_regressor",
            "--json",
            str(report_path),
        ],
        cwd=elsewhere,
        env=env,
    )
    assert "## GDRegressor vs SGDRegressor" in bench.stdout
    assert "[1/1] GDRegressor vs SGDRegressor: done in" in bench.stderr
    report = json.loads(report_path.read_text())
    assert report["suites"]["gd_regressor"]["n_samples"] == 2_000
    ratios = [r for r in report["ratios"] if r["suite"] == "gd_regressor"]
    assert len(ratios) == 4
    assert all(r["ratio"] > 0 for r in ratios if "one-epoch fit" in r["measurement"])
