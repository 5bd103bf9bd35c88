"""What the package declares matches what it does.

Every distribution fastgd imports at run time is a declared dependency;
scikit-learn's private modules are reached through one module only
(``fastgd._sklearn_compat``); the files and objects the code and the README
refer to exist. The installed wheel itself is tried in ``test_wheel.py``.
"""

import ast
import importlib
import re
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from packaging.requirements import Requirement

from fastgd._sklearn_compat import check_sample_weight

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "fastgd"
# Imported only where it is optional: PyTorch in the benchmarks (never a
# dependency of fastgd), matplotlib for ``fastgd bench --plot`` (the "plot" extra).
OPTIONAL_IMPORTS = {"torch", "matplotlib"}


def _imported_top_level_modules():
    """``module name -> files`` of every absolute import in fastgd's sources."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(path.name)
    return found


def test_every_imported_distribution_is_a_declared_dependency():
    declared = {
        Requirement(line).name.lower()
        for line in metadata.requires("fastgd") or ()
        if "extra ==" not in line
    }
    distributions = metadata.packages_distributions()
    missing = {}
    for module, files in _imported_top_level_modules().items():
        if module in sys.stdlib_module_names or module == "fastgd" or module in OPTIONAL_IMPORTS:
            continue
        names = {name.lower() for name in distributions.get(module, [module])}
        if not names & declared:
            missing[module] = sorted(files)
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"
    assert {"threadpoolctl", "filelock", "tqdm", "scikit-learn"} <= declared


def test_scikit_learn_is_pinned_to_a_range():
    (requirement,) = [
        Requirement(line) for line in metadata.requires("fastgd") if line.startswith("scikit")
    ]
    operators = {spec.operator for spec in requirement.specifier}
    assert operators == {">=", "<"}, requirement
    import sklearn

    assert requirement.specifier.contains(sklearn.__version__), "tests run an unsupported one"


def test_private_scikit_learn_modules_are_imported_in_one_place():
    private = re.compile(r"^\s*(from|import)\s+sklearn(\.\w+)*\._", re.MULTILINE)
    offenders = [
        str(path.relative_to(ROOT))
        for path in PACKAGE.rglob("*.py")
        if path.name != "_sklearn_compat.py" and private.search(path.read_text())
    ]
    assert not offenders


def _referenced_paths(text):
    pattern = r"\b((?:fastgd|tests|bench)/[\w/.\-]+\.(?:py|pyx|md|toml)|\.ci/run)\b"
    return set(re.findall(pattern, text))


def _referenced_objects(text):
    return set(re.findall(r":(?:mod|func|class|meth|data|attr):`~?(fastgd[\w.]*)`", text))


def _resolves(dotted_name):
    parts = dotted_name.split(".")
    for split in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for attribute in parts[split:]:
            if not hasattr(target, attribute):
                return False
            target = getattr(target, attribute)
        return True
    return False


def test_the_files_and_objects_referred_to_exist():
    sources = [ROOT / "README.md", *PACKAGE.rglob("*.py"), *PACKAGE.rglob("*.pyx")]
    sources += [*(ROOT / "tests").glob("*.py"), *(ROOT / "bench").glob("*.py")]
    missing_files, missing_objects = set(), set()
    for source in sources:
        text = source.read_text()
        where = source.relative_to(ROOT)
        missing_files |= {
            (path, str(where)) for path in _referenced_paths(text) if not (ROOT / path).exists()
        }
        missing_objects |= {
            (name, str(where)) for name in _referenced_objects(text) if not _resolves(name)
        }
    assert not missing_files
    assert not missing_objects


# ------------------------------------------------------ sample weight checks
def test_check_sample_weight_fills_and_keeps_dtypes():
    X = np.zeros((4, 2))
    np.testing.assert_array_equal(check_sample_weight(None, X), np.ones(4))
    np.testing.assert_array_equal(check_sample_weight(2.5, X), np.full(4, 2.5))
    assert check_sample_weight(None, X, dtype=np.float32).dtype == np.float32
    weights = np.array([1, 2, 3, 4], dtype=np.float32)
    assert check_sample_weight(weights, X) is weights  # already valid: not copied
    assert check_sample_weight([1, 2, 3, 4], X).dtype == np.float64
    assert check_sample_weight(weights, X, dtype=np.float64).dtype == np.float64
    assert check_sample_weight(weights, X, dtype=np.int32).dtype == np.float64


@pytest.mark.parametrize(
    "weights, message",
    [
        (np.ones((4, 1)), "must be a 1D array or a scalar"),
        (np.ones(3), "has 3 entries; expected one per sample \\(4\\)"),
        (np.zeros(4), "at least one non-zero weight"),
        (np.array([1.0, np.nan, 1.0, 1.0]), "NaN"),
    ],
)
def test_check_sample_weight_names_the_problem(weights, message):
    with pytest.raises(ValueError, match=message):
        check_sample_weight(weights, np.zeros((4, 2)))


def test_check_sample_weight_refuses_negative_weights_when_asked():
    weights = np.array([1.0, -1.0, 1.0])
    assert check_sample_weight(weights, np.zeros((3, 1))) is weights
    with pytest.raises(ValueError, match="Negative values in data passed to `sample_weight`"):
        check_sample_weight(weights, np.zeros((3, 1)), ensure_non_negative=True)
