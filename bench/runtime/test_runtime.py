"""Latency of ``slimkit.runtime.Engine`` on ONNX Runtime CPU, each candidate grouped with its baseline.

Run: ``python -m bench runtime`` (the row's counts, JSON merged into bench/runtime/benchmark.json), or
``python -m pytest bench/runtime --benchmark-only [--benchmark-json bench/out/benchmark.json]`` (the full
row's counts, bench/runtime/rows.py).

Groups (``--benchmark-group-by=group``, the default):

* ``overhead-b1-t1``: a hand-written ``sess.run`` on the largest variant's file (baseline) versus
  ``Engine.run(x, variant=largest)`` and ``Engine.run(x, budget=1.0)``; batch 1, one thread.
* ``switch-b1-t1``: the same 32 calls (8 per width) run width after width (baseline) or switching
  width on every call; the design promises switching costs nothing beyond the call.
* ``width-b{1,64}-t{1,default}``: each width alone, at batch 1 and 64, intra-op threads 1 and ORT's
  default.

Every benchmark uses ``benchmark.pedantic`` with the row's fixed rounds, iterations and warm-up. The
assertions check behaviour only (outputs equal the baseline's, the right variant served), never times:
the 2-core machine is shared, so read ratios within a group, not absolute numbers. The sortednet rows
(``python -m bench sortednet``) measure the same comparisons interleaved in one process for the reported
figures.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from bench.common import WIDTHS, raw_call, raw_session, threads_label, variant_file
from bench.core import Timing
from bench.runtime.rows import timing

NAMES = [f"w{w:.2f}" for w in WIDTHS]
LARGEST = NAMES[-1]
TIMING = timing()


def _pedantic(t: Timing) -> dict:
    """A row's counts as ``benchmark.pedantic`` arguments (its warm-up is in rounds of ``iterations`` calls)."""
    return dict(rounds=t.rounds, iterations=t.iterations, warmup_rounds=t.warmup // t.iterations)


ROUNDS = {1: _pedantic(TIMING["b1"]), 64: _pedantic(TIMING["b64"])}


@pytest.fixture(scope="session")
def raw(bench_bundle):
    """``raw(name, threads) -> f(x)``: a plain ORT session per (variant, threads), made once."""
    cache = {}

    def get(name: str, threads: int | None):
        if (name, threads) not in cache:
            cache[name, threads] = raw_call(raw_session(variant_file(bench_bundle, name), threads))
        return cache[name, threads]

    return get


def _info(benchmark, *, threads, batch, variant, call):
    benchmark.extra_info.update(provider="CPUExecutionProvider", device="cpu", onnxruntime=ort.__version__,
                                threads=threads_label(threads), batch=batch, variant=variant, call=call)


# -- engine overhead: the same file, batch 1, one thread -----------------------------------------------
def test_ort_raw_b1(benchmark, raw, engines, inputs):
    benchmark.group = "overhead-b1-t1"
    _info(benchmark, threads=1, batch=1, variant=LARGEST, call="sess.run(None, feed)[0] (baseline)")
    x = inputs[1]
    out = benchmark.pedantic(raw(LARGEST, 1), args=(x,), **ROUNDS[1])
    np.testing.assert_array_equal(out, engines[1].run(x, variant=LARGEST))


def test_engine_variant_b1(benchmark, raw, engines, inputs):
    benchmark.group = "overhead-b1-t1"
    _info(benchmark, threads=1, batch=1, variant=LARGEST, call="Engine.run(x, variant=largest)")
    eng, x = engines[1], inputs[1]
    out = benchmark.pedantic(lambda: eng.run(x, variant=LARGEST), **ROUNDS[1])
    assert eng.last == LARGEST
    np.testing.assert_array_equal(out, raw(LARGEST, 1)(x))


def test_engine_budget_b1(benchmark, raw, engines, inputs):
    benchmark.group = "overhead-b1-t1"
    _info(benchmark, threads=1, batch=1, variant=LARGEST, call="Engine.run(x, budget=1.0)")
    eng, x = engines[1], inputs[1]
    out = benchmark.pedantic(lambda: eng.run(x, budget=1.0), **ROUNDS[1])
    assert eng.last == LARGEST
    np.testing.assert_array_equal(out, raw(LARGEST, 1)(x))


# -- switching variants: same 32 calls, blocked versus alternating --------------------------------------
SWITCH = _pedantic(TIMING["switch"])


def _expected(raw, x):
    return {n: raw(n, 1)(x) for n in NAMES}


def test_stay_on_each_b1(benchmark, raw, engines, inputs):
    benchmark.group = "switch-b1-t1"
    _info(benchmark, threads=1, batch=1, variant="all", call="8 calls per width, width after width (baseline)")
    eng, x = engines[1], inputs[1]

    def blocked():
        outs = {}
        for n in NAMES:
            for _ in range(8):
                outs[n] = eng.run(x, variant=n)
        return outs

    outs = benchmark.pedantic(blocked, **SWITCH)
    want = _expected(raw, x)
    for n in NAMES:
        np.testing.assert_array_equal(outs[n], want[n])


def test_alternate_every_call_b1(benchmark, raw, engines, inputs):
    benchmark.group = "switch-b1-t1"
    _info(benchmark, threads=1, batch=1, variant="all", call="8 rounds of w0.25, w0.50, w0.75, w1.00")
    eng, x = engines[1], inputs[1]

    def alternating():
        outs = {}
        for _ in range(8):
            for n in NAMES:
                outs[n] = eng.run(x, variant=n)
        return outs

    outs = benchmark.pedantic(alternating, **SWITCH)
    want = _expected(raw, x)
    for n in NAMES:
        np.testing.assert_array_equal(outs[n], want[n])


# -- latency per width ------------------------------------------------------------------------------------
@pytest.mark.parametrize("threads", [1, None], ids=["t1", "tdefault"])
@pytest.mark.parametrize("batch", [1, 64], ids=["b1", "b64"])
@pytest.mark.parametrize("name", NAMES)
def test_width_latency(benchmark, raw, engines, inputs, name, batch, threads):
    benchmark.group = f"width-b{batch}-t{threads or 'default'}"
    _info(benchmark, threads=threads, batch=batch, variant=name, call="Engine.run(x, variant=name)")
    eng, x = engines[threads], inputs[batch]
    out = benchmark.pedantic(lambda: eng.run(x, variant=name), **ROUNDS[batch])
    assert eng.last == name and out.shape == (batch, 10)
    np.testing.assert_array_equal(out, raw(name, threads)(x))
