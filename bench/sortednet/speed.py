"""Speed figures of the SortedNet row, on its bundle: engine overhead, switching widths, latency per width.

Each function returns ``(figures, measurements)``: the figures for results.json (medians and ratios,
as the report reads them) and the per-round samples as :class:`~bench.core.Measurement` entries.
Every candidate is timed interleaved with its baseline (bench/speed.py).
"""

from __future__ import annotations

import numpy as np

from bench.common import raw_call, raw_session, threads_label, variant_file
from bench.core import Measurement, Timing
from bench.speed import measurements, per_call, ratio_summary, repeat, timed

__all__ = ["overhead", "switching", "latency"]


def overhead(engine, bundle_dir, x: np.ndarray, *, threads: int | None, timing: Timing, name: str):
    """``Engine.run`` (by name and by budget 1.0) versus a hand-written ``sess.run`` on the same file."""
    largest = engine.names[-1]
    raw = raw_call(raw_session(variant_file(bundle_dir, largest), threads))
    same = (np.array_equal(raw(x), engine.run(x, variant=largest))
            and np.array_equal(raw(x), engine.run(x, budget=1.0)) and engine.last == largest)
    fns = {"ort_raw": repeat(lambda: raw(x)),
           "engine_variant": repeat(lambda: engine.run(x, variant=largest)),
           "engine_budget": repeat(lambda: engine.run(x, budget=1.0))}
    per = timed(fns, timing)
    label = threads_label(threads)
    figures = {"threads": label, "variant": largest, "batch": int(x.shape[0]),
               "rounds": timing.rounds, "calls_per_round": timing.iterations, "outputs_equal": bool(same),
               "median_us": {n: float(np.median(t) * 1e6) for n, t in per.items()},
               "ratio_vs_raw": {n: ratio_summary(per[n], per["ort_raw"]) for n in ("engine_variant", "engine_budget")}}
    return figures, measurements(per, group=f"overhead-b{x.shape[0]}-t{label}", calls=timing.iterations,
                                 timing=name, baseline="ort_raw",
                                 extra={"threads": label, "variant": largest, "outputs_equal": bool(same)})


def switching(engine, bundle_dir, x: np.ndarray, *, threads: int | None, timing: Timing, name: str):
    """The same calls (equal share per width) run width after width, or switching width every call.

    The same two patterns also run on plain ORT sessions (one per file, same options): if those show the
    same ratio, a cost of switching comes from ONNX Runtime and the CPU caches, not from the engine.
    """
    names = engine.names
    k = len(names)
    raws = [raw_call(raw_session(variant_file(bundle_dir, n), threads)) for n in names]

    def stay(n: int) -> None:
        for name_ in names:
            for _ in range(n // k):
                engine.run(x, variant=name_)

    def alternate(n: int) -> None:
        for _ in range(n // k):
            for name_ in names:
                engine.run(x, variant=name_)

    def raw_stay(n: int) -> None:
        for f in raws:
            for _ in range(n // k):
                f(x)

    def raw_alternate(n: int) -> None:
        for _ in range(n // k):
            for f in raws:
                f(x)

    calls = timing.iterations - timing.iterations % k
    t = Timing(warmup=timing.warmup, rounds=timing.rounds, iterations=calls)
    per = timed({"stay": stay, "alternate": alternate, "raw_stay": raw_stay, "raw_alternate": raw_alternate}, t)
    label = threads_label(threads)
    figures = {"threads": label, "variants": names, "batch": int(x.shape[0]), "rounds": t.rounds,
               "calls_per_round": calls, "median_us": {n: float(np.median(s) * 1e6) for n, s in per.items()},
               "ratio_alternate_vs_stay": ratio_summary(per["alternate"], per["stay"]),
               "raw_ratio_alternate_vs_stay": ratio_summary(per["raw_alternate"], per["raw_stay"]),
               # the engine's own share: its switching ratio over the plain sessions' one, round by round
               "engine_over_raw_switching": ratio_summary(per["alternate"] / per["stay"],
                                                          per["raw_alternate"] / per["raw_stay"])}
    group = f"switch-b{x.shape[0]}-t{label}"
    ms = (measurements({n: per[n] for n in ("stay", "alternate")}, group=group, calls=calls, timing=name,
                       baseline="stay", extra={"threads": label})
          + measurements({n: per[n] for n in ("raw_stay", "raw_alternate")}, group=group + "-plain-ort", calls=calls,
                         timing=name, baseline="raw_stay", extra={"threads": label}))
    return figures, ms


def latency(engine, x: np.ndarray, *, threads: int | None, timing: Timing, name: str):
    """p50 / p95 of single calls per width, widths interleaved round by round.

    Also the speedup of the smallest width over the largest: the median over rounds of the ratio of the
    two widths' per-round median call times.
    """
    names = engine.names
    calls = per_call({n: (lambda n=n: engine.run(x, variant=n)) for n in names}, timing)
    round_median = {n: np.median(calls[n], axis=1) for n in names}
    per = {}
    for n in names:
        t = calls[n].ravel() * 1e3
        p50, p95 = np.percentile(t, [50, 95])
        per[n] = {"p50_ms": float(p50), "p95_ms": float(p95), "calls": int(t.size)}
    small, big = names[0], names[-1]
    label, batch = threads_label(threads), int(x.shape[0])
    figures = {"threads": label, "batch": batch, "rounds": timing.rounds, "calls_per_round": timing.iterations,
               "per_variant": per, "speedup": {"of": small, "over": big,
                                               **ratio_summary(round_median[big], round_median[small])}}
    ms = [Measurement(name=n, group=f"width-b{batch}-t{label}", seconds=calls[n].ravel().tolist(),
                      timing=name, baseline=None if n == big else big,
                      extra={"threads": label, "batch": batch, "variant": n, **per[n],
                             "speedup_of_baseline_over_this": ratio_summary(round_median[big], round_median[n])
                             if n != big else None})
          for n in names]
    return figures, ms
