"""The SNNK benchmark: SNNK blocks against truncated-SVD factorisations of the same blocks at equal
parameters and at equal MACs, the same distillation for both; closed-form fit times; ONNX Runtime latency.
``python -m bench snnk``; rows in :mod:`bench.snnk.rows`."""
