"""File sizes and onnxruntime latency of the sparse RNN rows.

Sizes: every model is exported with ``slimkit.export.to_onnx`` (dynamic batch and length, parity-checked
at two shapes); the figures are the ``.onnx`` file and the same file deflated in a ``.zip`` (what a
download or an artifact store holds). Latency: plain CPU sessions with the runtime backend's options and
one intra-op thread, every model timed interleaved with the dense one in short rotating rounds (see
``bench.speed.interleaved``); a speedup is the median over rounds of dense time / model time.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from bench.common import raw_call, raw_session
from bench.core import Measurement, Timing
from bench.speed import measurements, ratio_summary, repeat, timed
from slimkit.export import to_onnx

__all__ = ["file_sizes", "latency_ratios"]

BATCHES = (1, 32)
SEQ_LEN = 40


def file_sizes(modules: dict, example, out: Path) -> dict:
    """Export each module to ``out/<name>.onnx``; its size and its deflated size in bytes."""
    out.mkdir(parents=True, exist_ok=True)
    sizes = {}
    for name, module in modules.items():
        path = to_onnx(module, example, out / f"{name}.onnx", dynamic_dims={1: "length"})
        zpath = out / f"{name}.zip"
        with zipfile.ZipFile(zpath, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as z:
            z.write(path, arcname=path.name)
        sizes[name] = {"onnx_bytes": path.stat().st_size, "zip_bytes": zpath.stat().st_size}
    return sizes


def latency_ratios(folder: Path, names: tuple[str, ...], *, timing: Mapping[str, Timing], group: str,
                   threads: int = 1) -> tuple[dict, list[Measurement]]:
    """Speedup of every model over ``names[0]`` (the dense one) at each batch size (``timing["b<batch>"]``
    holds its counts), plus median ms; and the per-round samples."""
    rng = np.random.default_rng(0)
    result: dict = {n: {} for n in names[1:]}
    result[names[0]] = {}
    ms: list[Measurement] = []
    for b in BATCHES:
        x = rng.standard_normal((b, SEQ_LEN, 1)).astype(np.float32)
        calls = {n: raw_call(raw_session(folder / f"{n}.onnx", threads)) for n in names}
        per = timed({n: repeat(lambda f=f, x=x: f(x)) for n, f in calls.items()}, timing[f"b{b}"])
        result[names[0]][str(b)] = {"median_ms": float(np.median(per[names[0]]) * 1e3)}
        for n in names[1:]:
            r = ratio_summary(per[names[0]], per[n])
            result[n][str(b)] = {"speedup": r["median"], "q1": r["q1"], "q3": r["q3"],
                                 "median_ms": float(np.median(per[n]) * 1e3), "rounds": r["rounds"]}
        ms += measurements(per, group=f"{group}-b{b}", calls=timing[f"b{b}"].iterations, timing=f"b{b}",
                           baseline=names[0], extra={"batch": b, "threads": threads})
    return result, ms
