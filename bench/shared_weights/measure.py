"""Bytes, latency ratios and switching cost of shared bundles, each against its baseline in the same run.

Latency is timed the house way (bench/_speed.py): candidate and baseline run in many short rounds, the
order alternating every round, so a stall on this shared machine hits both alike; a figure is the median
over rounds of the per-round ratio (quartiles kept). GC is off while timing.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np


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


def interleaved(fns: dict[str, Callable[[], object]], *, rounds: int, calls: int) -> dict[str, np.ndarray]:
    """Seconds per call of each ``fn``, one figure per round; the order reverses every round."""
    names = list(fns)
    for n in names:
        for _ in range(max(2, calls // 4)):
            fns[n]()
    per = {n: np.empty(rounds) for n in names}
    enabled = gc.isenabled()
    gc.disable()
    try:
        for r in range(rounds):
            for n in (names if r % 2 == 0 else names[::-1]):
                f = fns[n]
                t0 = time.perf_counter()
                for _ in range(calls):
                    f()
                per[n][r] = (time.perf_counter() - t0) / calls
    finally:
        if enabled:
            gc.enable()
    return per


def ratio(candidate: np.ndarray, baseline: np.ndarray) -> dict[str, float]:
    r = candidate / baseline
    q1, med, q3 = np.percentile(r, [25, 50, 75])
    return {"median": float(med), "q1": float(q1), "q3": float(q3), "rounds": len(r),
            "baseline_ms": float(np.median(baseline) * 1e3), "candidate_ms": float(np.median(candidate) * 1e3)}


def sample(engine, batch: int) -> np.ndarray:
    spec = engine.input_spec
    shape = list(spec.example_shape or spec.shape)
    x = np.random.default_rng(0).standard_normal([1, *shape[1:]]).astype(spec.dtype)
    return np.ascontiguousarray(np.repeat(x, batch, axis=0))


def latency(candidate, baseline, *, batches: tuple[int, ...], budget_s: float, rounds: int) -> dict:
    """Per variant and batch, ``candidate`` engine over ``baseline`` engine (same variant names), after
    checking that both give the same outputs (up to float rounding)."""
    out: dict[str, dict] = {}
    for b in batches:
        x = sample(baseline, b)
        for name in baseline.names:
            ref, got = baseline.run(x, variant=name), candidate.run(x, variant=name)
            if not np.allclose(ref, got, rtol=1e-4, atol=1e-5):
                raise AssertionError(f"{name} at batch {b}: outputs differ by {np.abs(ref - got).max():.3g}")
            t0 = time.perf_counter()
            baseline.run(x, variant=name)
            calls = max(1, int(budget_s / rounds / 2 / max(time.perf_counter() - t0, 1e-6)))
            per = interleaved({"base": partial(baseline.run, x, variant=name),
                               "cand": partial(candidate.run, x, variant=name)}, rounds=rounds, calls=calls)
            out.setdefault(str(b), {})[name] = {**ratio(per["cand"], per["base"]), "calls": calls}
    return out


def switching(engine, *, batches: tuple[int, ...], budget_s: float, rounds: int) -> dict:
    """Every call on the next variant versus the same calls grouped variant by variant (equal shares)."""
    names, out = engine.names, {}
    for b in batches:
        x = sample(engine, b)
        t0 = time.perf_counter()
        for n in names:
            engine.run(x, variant=n)
        per_cycle = max(time.perf_counter() - t0, 1e-6)
        cycles = max(2, int(budget_s / rounds / 2 / per_cycle))

        def stay(x=x, cycles=cycles) -> None:
            for n in names:
                for _ in range(cycles):
                    engine.run(x, variant=n)

        def cycle(x=x, cycles=cycles) -> None:
            for _ in range(cycles):
                for n in names:
                    engine.run(x, variant=n)

        per = interleaved({"stay": stay, "cycle": cycle}, rounds=rounds, calls=1)
        out[str(b)] = {**ratio(per["cycle"], per["stay"]), "cycles": cycles}
    return out


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
