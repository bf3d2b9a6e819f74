"""The quantize benchmark: INT8 twins against FP32 per variant of the demo family (accuracy, ONNX Runtime
latency), and the deployment targets on that bundle (Triton repository, Ray Serve, HTTP throughput).
``python -m bench quantize``; rows in :mod:`bench.quantize.rows`."""
