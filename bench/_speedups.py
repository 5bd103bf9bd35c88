"""Speed-up ratios between the benchmarks of one pytest-benchmark group.

Each benchmark labels what it times with :func:`label` (``"fastgd"``,
``"fastgd-numba"``, ``"sklearn"``, ``"torch"``, ``"numpy"``, ...). After every
benchmark, ``bench/conftest.py`` calls :func:`record`; every fastgd benchmark
(a label starting with ``"fastgd"``) of a group then carries, in its
``extra_info``, one ``speedup_vs_<label>`` per other implementation of the
group that is not fastgd's: that implementation's median time divided by
fastgd's (> 1 means fastgd is faster). The ratios are recomputed whenever a member of the group
finishes, so they do not depend on the order the benchmarks run in, and they
are saved with ``--benchmark-save`` (or ``--benchmark-json``), because
pytest-benchmark writes ``extra_info`` when the session ends.

``python -m bench._speedups RUN.json [RUN.json ...]`` prints the Markdown table
of the README: for each speed-up, its median over the saved runs.
"""

import argparse
import json
import statistics

FASTGD_PREFIX = "fastgd"
LABEL_KEY = "implementation"
SPEEDUP_PREFIX = "speedup_vs_"

# group -> {label: benchmark fixture}, in the order the benchmarks finished.
_groups = {}


def label(benchmark, implementation, **info):
    """Say which implementation ``benchmark`` times, and record more facts about it.

    Parameters
    ----------
    benchmark : pytest-benchmark fixture
    implementation : str
        Short name, unique within the benchmark's group: ``"fastgd"`` or
        ``"fastgd-<variant>"`` for fastgd, the library's name otherwise.
    **info
        More entries of ``benchmark.extra_info`` (sizes, dtypes, ...).
    """
    benchmark.extra_info[LABEL_KEY] = implementation
    benchmark.extra_info.update(info)


def _median(benchmark):
    return benchmark.stats.stats.median


def record(benchmark):
    """Register a finished benchmark and refresh the speed-ups of its group.

    Benchmarks without a label or without timings (skipped, disabled,
    failed before timing) are ignored.

    Raises
    ------
    ValueError
        If two benchmarks of one group carry the same label.
    """
    implementation = benchmark.extra_info.get(LABEL_KEY)
    if implementation is None or benchmark.stats is None:
        return
    group = benchmark.stats.group
    members = _groups.setdefault(group, {})
    if implementation in members and members[implementation] is not benchmark:
        raise ValueError(
            f"two benchmarks of group {group!r} are labelled {implementation!r}: "
            "give each implementation of a group its own label"
        )
    members[implementation] = benchmark
    for name, fast in members.items():
        if not name.startswith(FASTGD_PREFIX):
            continue
        for other, reference in members.items():
            if not other.startswith(FASTGD_PREFIX):
                ratio = _median(reference) / _median(fast)
                fast.extra_info[SPEEDUP_PREFIX + other] = round(ratio, 4)


def speedup_rows():
    """Every speed-up measured so far, as ``(group, fastgd label, other label, ratio)``."""
    rows = []
    for group, members in _groups.items():
        for name, benchmark in members.items():
            for key, ratio in benchmark.extra_info.items():
                if key.startswith(SPEEDUP_PREFIX):
                    rows.append((group, name, key[len(SPEEDUP_PREFIX) :], ratio))
    return rows


def format_speedups(rows):
    """The rows of :func:`speedup_rows` as a text table (one line each)."""
    if not rows:
        return ""
    header = ("group", "fastgd", "vs")
    widths = [max(len(row[k]) for row in [header, *rows]) for k in range(3)]
    lines = []
    for row in [(*header, "speed-up"), *rows]:
        cells = [f"{cell:<{width}}" for cell, width in zip(row[:3], widths, strict=True)]
        ratio = row[3] if isinstance(row[3], str) else f"{row[3]:7.2f}x"
        lines.append("  ".join([*cells, ratio]))
    return "\n".join(lines)


def saved_speedups(paths):
    """Speed-ups of saved runs: ``{(group, fastgd label, other label): [ratio per run]}``.

    Parameters
    ----------
    paths : list of str
        JSON files written by ``--benchmark-save`` or ``--benchmark-json``.
    """
    ratios = {}
    for path in paths:
        with open(path) as handle:
            saved = json.load(handle)
        for benchmark in saved["benchmarks"]:
            info = benchmark["extra_info"]
            for key, ratio in info.items():
                if key.startswith(SPEEDUP_PREFIX):
                    other = key[len(SPEEDUP_PREFIX) :]
                    ratios.setdefault((benchmark["group"], info[LABEL_KEY], other), []).append(
                        ratio
                    )
    return ratios


def main(argv=None):
    """Print the median speed-ups of saved runs as a Markdown table."""
    parser = argparse.ArgumentParser(description="Median speed-ups of saved benchmark runs.")
    parser.add_argument("runs", nargs="+", help="JSON files of --benchmark-save runs")
    args = parser.parse_args(argv)
    print("| group | fastgd | vs | speed-up (median) | per run |")
    print("| --- | --- | --- | --- | --- |")
    for (group, name, other), ratios in saved_speedups(args.runs).items():
        runs = " / ".join(f"{r:.2f}" for r in ratios)
        print(f"| {group} | {name} | {other} | **{statistics.median(ratios):.2f}×** | {runs} |")


if __name__ == "__main__":
    main()
