"""The serving benchmark: ``slimkit serve`` against KServe's Python model server at batch 1, its overhead over
the in-process engine, and SLO control under a bursty trace. ``python -m bench serve``; rows in
:mod:`bench.serve.rows`."""
