"""Bytes, latency ratios and switching cost of shared bundles, each against its baseline in the same run.

Latency is timed the house way (bench/speed.py): candidate and baseline run in many short rounds, the
order alternating every round, so a stall on this shared machine hits both alike; a figure is the median
over rounds of the per-round ratio (quartiles kept), with the row's fixed counts. GC is off while timing.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from pathlib import Path

import numpy as np

from bench.core import Measurement, Timing
from bench.speed import measurements, ratio_summary, repeat, timed

__all__ = ["disk", "int8_twins", "sample", "latency", "switching", "same_graph_at_run_time"]


def _files(bundle: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in sorted(bundle.iterdir()) if p.is_file()}


def disk(dirs: dict[str, Path]) -> dict:
    """Bytes of the shared bundle (what serving reads: manifest, graphs, weights file) and of the separate
    one, each against the largest variant's own ONNX file as it is written today."""
    from slimkit import runtime

    largest = runtime.read_manifest(dirs["separate"]).variants[-1]
    own = (dirs["separate"] / largest.files["onnx"].path).stat().st_size
    out = {"largest_own_onnx_bytes": own, "largest_variant": largest.name}
    for kind in ("shared", "separate"):
        files = _files(dirs[kind])
        onnx_side = {k: v for k, v in files.items() if not k.endswith(".pt2")}
        out[kind] = {"bytes": sum(onnx_side.values()), "files": onnx_side,
                     "pt2_bytes": sum(v for k, v in files.items() if k.endswith(".pt2"))}
        out[kind]["ratio_to_largest"] = out[kind]["bytes"] / own
    out["shared"]["split_graph_bytes"] = sum(v for k, v in out["shared"]["files"].items() if k.endswith(".shared.onnx"))
    return out


def int8_twins(bundle: Path) -> dict:
    """What the INT8 twins of a shared bundle store: their files, and the bytes they read from weights.bin."""
    import onnx

    from slimkit import runtime

    m = runtime.read_manifest(bundle)
    files = {t.name: (bundle / t.files["onnx"].path).stat().st_size for t in m.twins}
    shared: dict[str, int] = {}
    for t in m.twins:
        g = onnx.load(str(bundle / t.files["onnx"].path), load_external_data=False).graph
        for init in g.initializer:
            if init.data_location == onnx.TensorProto.EXTERNAL:
                shared[init.name] = m.weights.tensors[init.name].nbytes
    largest = m.twins[-1].name if m.twins else None
    return {"twin_bytes": files, "twins_total": sum(files.values()), "largest_twin": largest,
            "ratio_to_largest_twin": sum(files.values()) / files[largest] if largest else None,
            "bytes_read_from_weights_file": sum(shared.values()), "shared_tensors": len(shared)}


def sample(engine, batch: int) -> np.ndarray:
    """``batch`` copies of one random input of the engine's example shape."""
    spec = engine.input_spec
    shape = list(spec.example_shape or spec.shape)
    x = np.random.default_rng(0).standard_normal([1, *shape[1:]]).astype(spec.dtype)
    return np.ascontiguousarray(np.repeat(x, batch, axis=0))


def _ratio(per: dict[str, np.ndarray], candidate: str, baseline: str) -> dict:
    return {**ratio_summary(per[candidate], per[baseline]), "baseline_ms": float(np.median(per[baseline]) * 1e3),
            "candidate_ms": float(np.median(per[candidate]) * 1e3)}


def latency(candidate, baseline, timing: Mapping[int, tuple[str, Timing]], *, label: str, group: str
            ) -> tuple[dict, list[Measurement]]:
    """Per batch and variant, ``candidate`` engine over ``baseline`` engine (same variant names), after
    checking that both give the same outputs (up to float rounding); ``timing`` maps each batch to the
    row's ``(timing name, Timing)``. Returns the figures and their pytest-benchmark measurements."""
    out: dict[str, dict] = {}
    ms: list[Measurement] = []
    for b, (key, t) in timing.items():
        x = sample(baseline, b)
        for name in baseline.names:
            ref, got = baseline.run(x, variant=name), candidate.run(x, variant=name)
            if not np.allclose(ref, got, rtol=1e-4, atol=1e-5):
                raise AssertionError(f"{name} at batch {b}: outputs differ by {np.abs(ref - got).max():.3g}")
            per = timed({"separate": repeat(partial(baseline.run, x, variant=name)),
                         label: repeat(partial(candidate.run, x, variant=name))}, t)
            out.setdefault(str(b), {})[name] = {**_ratio(per, label, "separate"), "calls": t.iterations}
            ms += measurements(per, group=f"{group}-{label}-b{b}-{name}", calls=t.iterations, timing=key,
                               baseline="separate", extra={"variant": name, "batch": b, "threads": 1})
    return out, ms


def switching(engine, timing: Mapping[int, tuple[str, Timing]], *, label: str, group: str
              ) -> tuple[dict, list[Measurement]]:
    """Every call on the next variant (``cycle``) versus the same calls grouped variant by variant
    (``stay``, the baseline; equal shares); one timed call is one call per variant."""
    names, out, ms = engine.names, {}, []
    for b, (key, t) in timing.items():
        x = sample(engine, b)

        def stay(n: int, x=x) -> None:
            for v in names:
                for _ in range(n):
                    engine.run(x, variant=v)

        def cycle(n: int, x=x) -> None:
            for _ in range(n):
                for v in names:
                    engine.run(x, variant=v)

        per = timed({"stay": stay, "cycle": cycle}, t)
        out[str(b)] = {**_ratio(per, "cycle", "stay"), "cycles": t.iterations}
        ms += measurements(per, group=f"{group}-switch-{label}-b{b}", calls=t.iterations, timing=key,
                           baseline="stay", extra={"batch": b, "threads": 1, "variants": len(names)})
    return out, ms


def same_graph_at_run_time(dirs: dict[str, Path]) -> dict[str, bool]:
    """Per variant: does onnxruntime, after its graph optimisations, run the same nodes on the same
    initializer shapes for the shared bundle's graph as for the separate file? (It folds the Concat
    nodes that assemble the shared tensors, and the BatchNorm kept apart, when the session starts.)"""
    import tempfile

    import onnx
    import onnxruntime as ort

    from slimkit import runtime
    from slimkit.runtime.backends import session_options

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for v in runtime.read_manifest(dirs["shared"]).variants:
            seen = []
            for kind in ("shared", "separate"):
                opts = session_options(1)  # the level slimkit serves with (all optimisations)
                opts.log_severity_level = 3  # saving a layout-optimised graph warns that it is machine-specific
                opts.optimized_model_filepath = f"{tmp}/{kind}-{v.name}.onnx"
                opts.add_session_config_entry("session.optimized_model_external_initializers_file_name",
                                              f"{kind}-{v.name}.bin")
                ort.InferenceSession(str(dirs[kind] / f"{v.name}.onnx"), opts, providers=["CPUExecutionProvider"])
                g = onnx.load(opts.optimized_model_filepath, load_external_data=False).graph
                seen.append(([n.op_type for n in g.node], sorted(tuple(t.dims) for t in g.initializer)))
            out[v.name] = seen[0] == seen[1]
    return out
