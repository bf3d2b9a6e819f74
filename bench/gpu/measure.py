"""Parity and speed figures of one backend (or a few side by side), by the house method of ``bench/``.

* Parity: the largest absolute difference to the onnxruntime CPU reference over every output element,
  at each batch size, on fresh random inputs.
* Latency: each call timed alone (``sync()`` first, so no earlier work is still queued); the variants
  run interleaved round by round with the order rotating, so a stall hits them alike; p50 / p99 /
  mean per variant and batch, throughput = batch / mean.
* Ratios (width speedup, switching, CUDA graphs): the median over rounds of a per-round ratio, the
  two candidates timed in alternating short rounds within the same run.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from bench.speed import gc_off, order, ratio_summary

__all__ = ["Settings", "QUICK", "FULL", "parity", "latency", "switching", "side_by_side", "ratio_summary",
           "inputs"]

Call = Callable[[np.ndarray], np.ndarray]


class Settings:
    """Counts of one run: ``warmup`` untimed calls, ``rounds`` x ``calls`` timed ones, for latency and ratios."""

    def __init__(self, *, warmup: int, rounds: int, calls: int, ratio_rounds: int, ratio_calls: int,
                 batches: tuple[int, ...] = (1, 64)):
        self.warmup, self.rounds, self.calls = warmup, rounds, calls
        self.ratio_rounds, self.ratio_calls, self.batches = ratio_rounds, ratio_calls, batches

    def as_dict(self) -> dict:
        return dict(vars(self), batches=list(self.batches))


FULL = Settings(warmup=20, rounds=20, calls=10, ratio_rounds=20, ratio_calls=40)  # 200 timed calls each
QUICK = Settings(warmup=2, rounds=3, calls=3, ratio_rounds=3, ratio_calls=4)


def inputs(shape: tuple[int, ...], batches: tuple[int, ...], seed: int) -> dict[int, np.ndarray]:
    """``{batch: float32 array}`` of standard-normal data (a fresh draw per batch size)."""
    rng = np.random.default_rng(seed)
    return {b: rng.standard_normal((b, *shape)).astype(np.float32) for b in batches}


def parity(calls: dict[str, Call], reference: dict[tuple[str, int], np.ndarray],
           xs: dict[int, np.ndarray]) -> dict[str, dict]:
    """Per variant: ``max_abs`` (over every batch), ``max_rel`` (over the reference's largest magnitude)
    and ``finite``; ``error`` instead when the call fails or its output shape differs."""
    out = {}
    for name, call in calls.items():
        worst, scale, finite = 0.0, 0.0, True
        try:
            for b, x in xs.items():
                ref, got = reference[name, b], np.asarray(call(x))
                if got.shape != ref.shape:
                    raise ValueError(f"batch {b}: output shape {got.shape}, reference {ref.shape}")
                finite &= bool(np.isfinite(got).all())
                worst = max(worst, float(np.max(np.abs(got.astype(np.float64) - ref))))
                scale = max(scale, float(np.max(np.abs(ref))))
        except Exception as e:  # noqa: BLE001 - reported per variant
            out[name] = {"error": f"{type(e).__name__}: {e}"}
            continue
        out[name] = {"max_abs": worst if finite else None, "max_rel": worst / scale if finite and scale else None,
                     "finite": finite, "batches": sorted(xs)}
    return out


def latency(calls: dict[str, Call], x: np.ndarray, s: Settings, sync: Callable[[], None]) -> dict:
    """p50 / p99 / mean / throughput per variant at ``x``'s batch, and the speedup of the first (smallest)
    variant over the last (largest): the median over rounds of their per-round median ratio."""
    names = list(calls)
    batch = int(x.shape[0])
    for n in names:
        for _ in range(s.warmup):
            calls[n](x)
    samples: dict[str, list[np.ndarray]] = {n: [] for n in names}
    round_median = {n: np.empty(s.rounds) for n in names}
    with gc_off():
        for r in range(s.rounds):
            for n in order(names, r):
                t = np.empty(s.calls)
                for i in range(s.calls):
                    sync()
                    t0 = time.perf_counter()
                    calls[n](x)
                    t[i] = time.perf_counter() - t0
                samples[n].append(t)
                round_median[n][r] = np.median(t)
    per = {}
    for n in names:
        t = np.concatenate(samples[n])
        p50, p99 = np.percentile(t * 1e3, [50, 99])
        per[n] = {"p50_ms": float(p50), "p99_ms": float(p99), "mean_ms": float(t.mean() * 1e3),
                  "throughput_per_s": float(batch / t.mean()), "calls": int(t.size)}
    result = {"batch": batch, "per_variant": per}
    if len(names) > 1:
        result["speedup"] = {"of": names[0], "over": names[-1],
                             **ratio_summary(round_median[names[-1]], round_median[names[0]])}
    return result


def _interleaved(fns: dict[str, Callable[[int], object]], s: Settings,
                 sync: Callable[[], None]) -> dict[str, np.ndarray]:
    """Seconds per call of each ``fn(n)`` (which makes ``n`` calls), one figure per round."""
    names = list(fns)
    for n in names:
        fns[n](max(s.warmup, 1))
    per = {n: np.empty(s.ratio_rounds) for n in names}
    with gc_off():
        for r in range(s.ratio_rounds):
            for n in order(names, r):
                sync()
                t0 = time.perf_counter()
                fns[n](s.ratio_calls)
                per[n][r] = (time.perf_counter() - t0) / s.ratio_calls
    return per


def switching(calls: dict[str, Call], x: np.ndarray, s: Settings, sync: Callable[[], None]) -> dict:
    """The same calls (an equal share per variant) variant after variant ("stay") or switching variant
    on every call ("alternate"); the figure is alternate / stay per round."""
    fns = list(calls.values())
    k = len(fns)

    def stay(n: int) -> None:
        for f in fns:
            for _ in range(max(n // k, 1)):
                f(x)

    def alternate(n: int) -> None:
        for _ in range(max(n // k, 1)):
            for f in fns:
                f(x)

    per = _interleaved({"stay": stay, "alternate": alternate}, s, sync)
    return {"batch": int(x.shape[0]), "variants": list(calls), "rounds": s.ratio_rounds,
            "calls_per_round": max(s.ratio_calls // k, 1) * k,
            "median_us": {n: float(np.median(t) * 1e6) for n, t in per.items()},
            "ratio_alternate_vs_stay": ratio_summary(per["alternate"], per["stay"])}


def side_by_side(candidates: dict[str, Call], x: np.ndarray, s: Settings, sync: Callable[[], None],
                 baseline: str) -> dict:
    """Per-call time of each candidate (one variant each), interleaved; ratios ``other / baseline``
    (above 1: the baseline is faster)."""
    def repeat(f: Call) -> Callable[[int], None]:
        def run(n: int) -> None:
            for _ in range(n):
                f(x)
        return run

    per = _interleaved({n: repeat(f) for n, f in candidates.items()}, s, sync)
    return {"batch": int(x.shape[0]), "median_us": {n: float(np.median(t) * 1e6) for n, t in per.items()},
            "ratio_vs": baseline,
            "ratios": {n: ratio_summary(per[n], per[baseline]) for n in candidates if n != baseline}}
