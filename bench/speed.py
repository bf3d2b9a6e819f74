"""The house method for speed: every candidate timed interleaved with its baseline in one process.

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

from bench.core import Measurement, Timing

__all__ = ["interleaved", "per_call", "timed", "ratio_summary", "repeat", "order", "gc_off", "measurements"]


@contextmanager
def gc_off():
    """No garbage-collection pauses inside a timed region; the previous setting comes back after."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def order(names: list[str], r: int) -> list[str]:
    """Round ``r``'s order: rotated each round and reversed every other pass, so no candidate always
    runs first or right after a given one."""
    k = r % len(names)
    out = names[k:] + names[:k]
    return out[::-1] if (r // len(names)) % 2 else out


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
    with gc_off():
        for r in range(rounds):
            for n in order(names, r):
                t0 = time.perf_counter()
                fns[n](calls)
                per[n][r] = (time.perf_counter() - t0) / calls
    return per


def per_call(fns: dict[str, Callable[[], object]], timing: Timing) -> dict[str, np.ndarray]:
    """Seconds of every single call of each ``fn()``, shape (rounds, iterations): ``timing.warmup`` calls
    of each first, then rounds in the rotating order of :func:`order`, each call timed on its own, GC off.
    For latency percentiles (p50, p95) rather than throughput."""
    names = list(fns)
    for n in names:
        for _ in range(timing.warmup):
            fns[n]()
    per = {n: np.empty((timing.rounds, timing.iterations)) for n in names}
    with gc_off():
        for r in range(timing.rounds):
            for n in order(names, r):
                f, row = fns[n], per[n][r]
                for i in range(timing.iterations):
                    t0 = time.perf_counter()
                    f()
                    row[i] = time.perf_counter() - t0
    return per


def timed(fns: dict[str, Callable[[int], object]], timing: Timing) -> dict[str, np.ndarray]:
    """:func:`interleaved` with a row's fixed counts."""
    return interleaved(fns, rounds=timing.rounds, calls=timing.iterations, warmup=timing.warmup)


def ratio_summary(candidate: np.ndarray, baseline: np.ndarray) -> dict[str, float]:
    """Median and quartiles of the per-round ratio candidate / baseline."""
    r = candidate / baseline
    q1, med, q3 = np.percentile(r, [25, 50, 75])
    return {"median": float(med), "q1": float(q1), "q3": float(q3), "rounds": len(r)}


def repeat(f: Callable[[], object]) -> Callable[[int], None]:
    """``f`` as a candidate of :func:`interleaved`: ``run(n)`` calls it ``n`` times."""
    def run(n: int) -> None:
        for _ in range(n):
            f()

    return run


def measurements(per: dict[str, np.ndarray], *, group: str, calls: int, timing: str, baseline: str | None,
                 extra: dict | None = None) -> list[Measurement]:
    """One :class:`Measurement` per candidate of an interleaved run, each with its ratio to ``baseline``
    (median and IQR over rounds) in ``extra``."""
    out = []
    for name, seconds in per.items():
        info = dict(extra or {})
        if baseline is not None and name != baseline:
            info["ratio_to_baseline"] = ratio_summary(seconds, per[baseline])
        out.append(Measurement(name=name, group=group, seconds=seconds.tolist(), iterations=calls, timing=timing,
                               baseline=None if name == baseline else baseline, extra=info))
    return out
