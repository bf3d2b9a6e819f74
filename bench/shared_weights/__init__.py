"""One copy of a nested family's weights, measured (issue 16): bundle bytes, load-time memory and latency
of shared bundles against today's separate files, on two SortedNet families. Run from the repository root::

    .venv/bin/python -m bench.shared_weights            # -> bench/shared_weights/results.json, bench/SHARED_WEIGHTS_RESULTS.md
    .venv/bin/python -m bench.shared_weights --quick    # -> bench/out/shared_weights-quick.{json,md}

Only slimkit's public API (and onnxruntime/onnx to look at what onnxruntime runs).
"""
