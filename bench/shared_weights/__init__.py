"""One copy of a nested family's weights, measured (issue 16): bundle bytes, load-time memory and latency
of shared bundles against today's separate files, on two SortedNet families. Run from the repository root::

    .venv/bin/python -m bench shared_weights            # full rows -> bench/shared_weights/results.json, RESULTS.md
    .venv/bin/python -m bench shared_weights --quick    # quick rows -> bench/out/quick/shared_weights/

(``python -m bench.shared_weights ...`` is the same.) Rows: rows.py; what is measured: run.py. Only
slimkit's public API (and onnxruntime/onnx to look at what onnxruntime runs).
"""
