"""``python -m bench.fusion``: the FusionClassifier table of :mod:`fastgd.benchmarks.fusion`."""

from fastgd.benchmarks.fusion import main

if __name__ == "__main__":
    main()
