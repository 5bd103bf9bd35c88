"""``python -m bench.first_fit``: the table of :mod:`fastgd.benchmarks.first_fit`."""

from fastgd.benchmarks.first_fit import main

if __name__ == "__main__":
    main()
