"""fastgd: compiled gradient-descent estimators for scikit-learn.

Estimators are imported lazily (PEP 562) so that ``import fastgd`` stays
cheap: Numba, which takes a noticeable fraction of a second to import, is only
loaded when a Numba kernel is first needed.
"""

import importlib

__version__ = "0.1.0.dev0"

_LAZY_ATTRIBUTES = {
    "GDRegressor": "fastgd.gd_regressor",
    "GDClassifier": "fastgd.gd_classifier",
    "FusionClassifier": "fastgd.fusion",
    "MultiTaskRegressor": "fastgd.multitask",
    "stack_modalities": "fastgd._branches",
    "compile_kernels": "fastgd._compile",
}

__all__ = sorted(_LAZY_ATTRIBUTES) + ["__version__"]


def __getattr__(name):
    module_name = _LAZY_ATTRIBUTES.get(name)
    if module_name is None:
        raise AttributeError(f"module 'fastgd' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
