"""``python -m bench.multitask``: the table of :mod:`fastgd.benchmarks.multitask`."""

from fastgd.benchmarks.multitask import main

if __name__ == "__main__":
    main()
