"""The runtime benchmark: a pytest-benchmark suite of ``Engine.run`` latency on a SortedNet bundle, each
candidate grouped with its baseline (test_runtime.py, conftest.py). ``python -m bench runtime`` runs it
through pytest with the row's counts; ``python -m pytest bench/runtime --benchmark-only`` runs it alone."""
