"""Head-to-head benchmarks of fastgd against the libraries its users would use instead.

Part of the installed package, so that ``fastgd bench`` measures any
installation on its own machine:

* :mod:`~fastgd.benchmarks.gd_regressor`: GDRegressor against scikit-learn's
  SGDRegressor (and the machine's limit, one ``X @ w`` pass);
* :mod:`~fastgd.benchmarks.gd_classifier`: GDClassifier against scikit-learn's
  SGDClassifier;
* :mod:`~fastgd.benchmarks.fusion`: FusionClassifier against PyTorch (when
  installed) and scikit-learn's MLPClassifier;
* :mod:`~fastgd.benchmarks.multitask`: MultiTaskRegressor against
  scikit-learn's MLPRegressor;
* :mod:`~fastgd.benchmarks.runner`: ``fastgd bench``, which runs them one after
  the other and gathers their ratios;
* :mod:`~fastgd.benchmarks.timing`: medians of repeated, interleaved runs.

Each suite module is also a script (``python -m fastgd.benchmarks.fusion
--quick``), and the pytest-benchmark suite in the ``bench/`` folder of the
source tree times the same problems and models.
"""
