"""slimkit's benchmarks: one runner over one table of rows, run as ``python -m bench <method|all> [--quick]``.

bench/ is a package so every module imports as ``bench.<...>`` from the repository root (no script edits
``sys.path``) and uses only slimkit's public API. :mod:`bench.core` defines a row, :mod:`bench.runner`
runs rows, :mod:`bench.record` writes pytest-benchmark's JSON, :mod:`bench.overview` writes
bench/RESULTS.md; each method lives in ``bench/<method>/`` with its rows, its measurements, its report
and its committed figures. bench/README.md is the guide.
"""
