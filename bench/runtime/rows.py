"""The runtime rows: the pytest-benchmark suite of test_runtime.py with the row's fixed counts
(bench/core.py: the interface). The suite reads its counts from :func:`timing` (the full row's when it is
run by pytest directly)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from bench.core import Row, Timing, read

__all__ = ["ABOUT", "ROWS", "ENV", "timing", "render", "summary"]

ABOUT = ("pytest-benchmark suite of `Engine.run` on a SortedNet bundle of the zoo ResCNN (epochs=0: latency does "
         "not depend on training): engine overhead over a plain `sess.run`, switching widths every call, latency "
         "per width at batch 1 and 64, intra-op threads 1 and default. pytest-benchmark runs groups one after "
         "the other (not interleaved), so compare within a group; the sortednet rows give the reported ratios.")

MEASURE = "bench.runtime.run:measure"
MODEL = "SortedNet bundle of zoo `rescnn` (32, 64), widths 0.25-1.00, epochs=0"
ENV = "BENCH_RUNTIME_TIMING"  # the runner hands the row's counts to the pytest process through this variable
# warm-up counts are calls (pytest-benchmark's warmup_rounds = warmup // iterations); a switch "call" is
# the 32-call pattern (8 calls per width)
FULL = {"b1": Timing(500, 100, 50), "b64": Timing(25, 40, 5), "switch": Timing(25, 60, 5)}
QUICK = {"b1": Timing(100, 10, 20), "b64": Timing(4, 5, 2), "switch": Timing(4, 10, 2)}

ROWS = [
    Row("runtime", "engine", MODEL, "pytest-benchmark pedantic: overhead b1, switch b1, width b1/b64 x threads 1/default",
        MEASURE, timing=FULL),
    Row("runtime", "engine-quick", MODEL, "as the full row, fewer rounds", MEASURE, timing=QUICK, quick=True),
]


def timing() -> dict[str, Timing]:
    """The counts the suite runs with: those the runner passed in ``$BENCH_RUNTIME_TIMING``, else the full row's."""
    raw = os.environ.get(ENV)
    return {k: Timing(**v) for k, v in json.loads(raw).items()} if raw else dict(FULL)


def render(folder: Path) -> dict[str, str]:
    """``RESULTS.md`` from ``results.json``: each group's median per call and ratio to its baseline."""
    from bench.runtime.run import markdown

    doc = read(folder)
    return {"RESULTS.md": markdown(doc)} if doc else {}


def summary(folder: Path) -> list[str]:
    doc = read(folder)
    out = []
    for group, rows in (doc["groups"] if doc else {}).items():
        out.append(f"- `{group}`: " + ", ".join(f"{r['name']} {r['median_us']:.1f} us"
                                                 + (f" ({r['ratio']:.3f}x)" if r["ratio"] is not None else " (baseline)")
                                                 for r in rows))
    return out
