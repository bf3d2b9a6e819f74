"""Speed figures of ``bench/run.py``: every candidate timed interleaved with its baseline in one process.

On a shared machine another process can take a core for seconds at a time. Timing the baseline and
the candidate in many short alternating rounds (the order rotating every round) lets such a stall hit
both alike; the reported figure is the median over rounds of the per-round ratio.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from contextlib import contextmanager

import numpy as np
from _bench import raw_call, raw_session, threads_label, variant_file

__all__ = ["interleaved", "ratio_summary", "overhead", "switching", "latency"]




@contextmanager
def _gc_off():
    """No garbage-collection pauses inside a timed region; the previous setting comes back after."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()

def _order(names: list[str], r: int) -> list[str]:
    """Round ``r``'s order: rotated each round and reversed every other pass, so no candidate always
    runs first or right after a given one."""
    k = r % len(names)
    order = names[k:] + names[:k]
    return order[::-1] if (r // len(names)) % 2 else order

def interleaved(fns: dict[str, Callable[[int], object]], *, rounds: int, calls: int,
                warmup: int) -> dict[str, np.ndarray]:
    """Seconds per call of each ``fn(n)`` (which makes ``n`` calls), one figure per round.

    Every round runs every candidate once; the order rotates by one each round and reverses every
    other pass, so no candidate always runs first (or right after a given one). GC is off while timing.
    """
    names = list(fns)
    for n in names:
        fns[n](warmup)
    per = {n: np.empty(rounds) for n in names}
    with _gc_off():
        for r in range(rounds):
            order = _order(names, r)
            for n in order:
                t0 = time.perf_counter()
                fns[n](calls)
                per[n][r] = (time.perf_counter() - t0) / calls
    return per


def ratio_summary(candidate: np.ndarray, baseline: np.ndarray) -> dict[str, float]:
    """Median and quartiles of the per-round ratio candidate / baseline."""
    r = candidate / baseline
    q1, med, q3 = np.percentile(r, [25, 50, 75])
    return {"median": float(med), "q1": float(q1), "q3": float(q3), "rounds": len(r)}


def _repeat(f: Callable[[], object]) -> Callable[[int], None]:
    def run(n: int) -> None:
        for _ in range(n):
            f()

    return run


def overhead(engine, bundle_dir, x: np.ndarray, *, threads: int | None, rounds: int, calls: int) -> dict:
    """``Engine.run`` (by name and by budget 1.0) versus a hand-written ``sess.run`` on the same file."""
    largest = engine.names[-1]
    raw = raw_call(raw_session(variant_file(bundle_dir, largest), threads))
    same = (np.array_equal(raw(x), engine.run(x, variant=largest))
            and np.array_equal(raw(x), engine.run(x, budget=1.0)) and engine.last == largest)
    fns = {"ort_raw": _repeat(lambda: raw(x)),
           "engine_variant": _repeat(lambda: engine.run(x, variant=largest)),
           "engine_budget": _repeat(lambda: engine.run(x, budget=1.0))}
    per = interleaved(fns, rounds=rounds, calls=calls, warmup=min(calls, 500))
    return {"threads": threads_label(threads), "variant": largest, "batch": int(x.shape[0]),
            "rounds": rounds, "calls_per_round": calls, "outputs_equal": bool(same),
            "median_us": {n: float(np.median(t) * 1e6) for n, t in per.items()},
            "ratio_vs_raw": {n: ratio_summary(per[n], per["ort_raw"]) for n in ("engine_variant", "engine_budget")}}


def switching(engine, bundle_dir, x: np.ndarray, *, threads: int | None, rounds: int, calls: int) -> dict:
    """The same calls (equal share per width) run width after width, or switching width every call.

    The same two patterns also run on plain ORT sessions (one per file, same options): if those show the
    same ratio, a cost of switching comes from ONNX Runtime and the CPU caches, not from the engine.
    """
    names = engine.names
    k = len(names)
    raws = [raw_call(raw_session(variant_file(bundle_dir, n), threads)) for n in names]

    def stay(n: int) -> None:
        for name in names:
            for _ in range(n // k):
                engine.run(x, variant=name)

    def alternate(n: int) -> None:
        for _ in range(n // k):
            for name in names:
                engine.run(x, variant=name)

    def raw_stay(n: int) -> None:
        for f in raws:
            for _ in range(n // k):
                f(x)

    def raw_alternate(n: int) -> None:
        for _ in range(n // k):
            for f in raws:
                f(x)

    calls -= calls % k
    per = interleaved({"stay": stay, "alternate": alternate, "raw_stay": raw_stay, "raw_alternate": raw_alternate},
                      rounds=rounds, calls=calls, warmup=min(calls, 400))
    return {"threads": threads_label(threads), "variants": names, "batch": int(x.shape[0]), "rounds": rounds,
            "calls_per_round": calls, "median_us": {n: float(np.median(t) * 1e6) for n, t in per.items()},
            "ratio_alternate_vs_stay": ratio_summary(per["alternate"], per["stay"]),
            "raw_ratio_alternate_vs_stay": ratio_summary(per["raw_alternate"], per["raw_stay"]),
            # the engine's own share: its switching ratio over the plain sessions' one, round by round
            "engine_over_raw_switching": ratio_summary(per["alternate"] / per["stay"],
                                                       per["raw_alternate"] / per["raw_stay"])}


def latency(engine, x: np.ndarray, *, threads: int | None, rounds: int, calls: int) -> dict:
    """p50 / p95 of single calls per width, widths interleaved round by round.

    Also the speedup of the smallest width over the largest: the median over rounds of the ratio of the
    two widths' per-round median call times.
    """
    names = engine.names
    for n in names:  # warm-up
        for _ in range(max(5, calls // 4)):
            engine.run(x, variant=n)
    samples = {n: [] for n in names}
    round_median = {n: np.empty(rounds) for n in names}
    with _gc_off():
        for r in range(rounds):
            order = _order(names, r)
            for n in order:
                t = np.empty(calls)
                for i in range(calls):
                    t0 = time.perf_counter()
                    engine.run(x, variant=n)
                    t[i] = time.perf_counter() - t0
                samples[n].append(t)
                round_median[n][r] = np.median(t)
    per = {}
    for n in names:
        t = np.concatenate(samples[n]) * 1e3
        p50, p95 = np.percentile(t, [50, 95])
        per[n] = {"p50_ms": float(p50), "p95_ms": float(p95), "calls": int(t.size)}
    small, big = names[0], names[-1]
    return {"threads": threads_label(threads), "batch": int(x.shape[0]), "rounds": rounds, "calls_per_round": calls,
            "per_variant": per, "speedup": {"of": small, "over": big,
                                            **ratio_summary(round_median[big], round_median[small])}}
