"""SLO controller: placement by queue and service model, feedback, and the server in SLO mode."""

from __future__ import annotations

import http.client
import json

import numpy as np
import pytest

from slimkit.runtime.controller import SLOController
from slimkit.runtime.errors import ConfigError

NAMES = ["small", "medium", "large"]
# service ms at batch 1 and 8: small 1 + 0.1n, medium 2 + 0.5n, large 4 + 1n
TIMES = {"small": {1: 1.1, 8: 1.8}, "medium": {1: 2.5, 8: 6.0}, "large": {1: 5.0, 8: 12.0}}


def _controller(slo_ms=20.0, workers=1, **kw):
    c = SLOController(NAMES, slo_ms, workers=workers, target=1.0, **kw)
    c.calibrate(TIMES)
    return c


def test_idle_server_serves_the_largest_variant_that_fits_the_slo():
    assert _controller(20).choose(1) == 2          # 5 ms <= 20
    assert _controller(20).choose(8) == 2          # 12 ms <= 20
    assert _controller(10).choose(8) == 1          # large 12 > 10, medium 6 <= 10
    assert _controller(1.5).choose(1) == 0         # nothing fits: the smallest
    assert _controller(20).choose(1, cap=1) == 1   # a request's budget caps the choice


def test_steps_down_as_the_queue_grows_and_back_up_as_it_drains():
    c = _controller(20, workers=1)
    picks, tokens = [], []
    for k in range(8):  # a queue builds (nothing finishes meanwhile), arrivals 1 s apart
        i = c.choose(1, now=float(k))
        picks.append(i)
        tokens.append((i, c.admit(i, 1)))
    assert picks[0] == 2 and picks[-1] == 0 and picks == sorted(picks, reverse=True)
    assert c.in_flight == 8
    for i, tok in tokens:  # the queue drains at the modelled speed
        c.done(i, 1, tok, service_ms=c._model(i, 1), total_ms=5.0)
    assert c.backlog_ms == pytest.approx(0.0, abs=1e-9) and c.in_flight == 0
    assert c.choose(1, now=8.0) == 2


def test_a_variant_no_more_accurate_than_a_cheaper_one_is_never_chosen():
    c = SLOController(NAMES, 20.0, target=1.0, accuracy=[0.90, 0.95, 0.95])  # large buys nothing
    c.calibrate(TIMES)
    assert c.candidates == [0, 1] and c.choose(1) == 1 and c.choose(1, cap=0) == 0
    c = SLOController(NAMES, 20.0, target=1.0, accuracy=[0.971, 0.988, 0.990])  # +0.2 pt: not worth 2x
    assert c.candidates == [0, 1]
    assert SLOController(NAMES, 20.0, accuracy=[0.971, 0.988, 0.990], min_gain=0).candidates == [0, 1, 2]
    c = SLOController(NAMES, 20.0, target=1.0, accuracy=[0.90, float("nan"), 0.96])  # unknown: kept
    c.calibrate(TIMES)
    assert c.candidates == [0, 1, 2] and c.choose(1) == 2
    with pytest.raises(ConfigError, match="one value per variant"):
        SLOController(NAMES, 20.0, accuracy=[0.9])
    with pytest.raises(ConfigError, match="min_gain"):
        SLOController(NAMES, 20.0, min_gain=-0.1)


def _simulate(c: SLOController, arrivals: np.ndarray, n: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """One FIFO worker serving at the modelled speed: (variant, latency ms) per arrival (times in s)."""
    free, queue, picks, lat = 0.0, [], [], []
    for t in arrivals:
        while queue and queue[0][0] <= t:  # finished before this arrival
            end, i, tok, start = queue.pop(0)
            c.done(i, n, tok, service_ms=c._model(i, n), total_ms=(end - start) * 1e3)
        i = c.choose(n, now=float(t))
        tok = c.admit(i, n)
        free = max(free, t) + c._model(i, n) / 1e3
        queue.append((free, i, tok, t))
        picks.append(i)
        lat.append((free - t) * 1e3)
    return np.array(picks), np.array(lat)


@pytest.mark.parametrize("rate", [100, 300, 500])
def test_poisson_load_keeps_the_slo_without_stepping_down_needlessly(rate):
    # service at batch 1: small 1.1 ms, medium 2.5, large 5; one worker. 100/s: large at 0.5 utilization;
    # 300/s: large overloaded (1.5), medium 0.75; 500/s: medium 1.25, only small sustainable (0.55).
    c = _controller(20)
    t = np.cumsum(np.random.default_rng(0).exponential(1 / rate, 3000))
    picks, lat = _simulate(c, t)
    assert np.quantile(lat, 0.99) <= 20
    share = np.bincount(picks, minlength=3) / len(picks)
    if rate == 100:  # the largest, but for the rare queue that leaves it no slack
        assert share[2] > 0.95
    elif rate == 300:  # the largest only while the queue is short; the medium one is sustainable
        assert share[0] < 0.1 and share[1] > 0.5 and share[2] > 0.05
    else:  # medium runs while the queue allows, small drains it
        assert share[1] > 0.2 and share[0] > 0.2 and share[2] < 0.02


def test_poisson_clumps_do_not_step_down_a_sustainable_variant():
    # medium at 0.75 utilization: the 16-arrival rate often reads far above the mean, yet no queue forms
    c = _controller(20, accuracy=[0.90, 0.95, 0.95])  # large buys nothing: medium is the top candidate
    t = np.cumsum(np.random.default_rng(1).exponential(1 / 300, 3000))
    short_rate = 15 / (t[15:] - t[:-15])
    assert (short_rate * 2.5e-3 > 0.9).mean() > 0.2  # a utilization cap would step down on these
    picks, lat = _simulate(c, t)
    assert (picks == 1).mean() > 0.9 and np.quantile(lat, 0.99) <= 20


def test_a_short_clump_is_absorbed_a_sustained_burst_is_not():
    # two workers; medium (2.5 ms) is the top candidate and runs at 0.25 utilization at 200/s
    c = _controller(20, workers=2, accuracy=[0.90, 0.95, 0.95])
    t = 0.0
    for _ in range(48):
        t += 0.005
        assert c.choose(1, now=t) == 1
    for _ in range(16):  # 16 arrivals within 6 ms (a client that fell behind): 2500/s, medium at 3.1x
        t += 0.0004
        i = c.choose(1, now=t)
    assert i == 1  # the clump can build ~13 ms of queue at most (2.1 x 6 ms): the slack absorbs it
    for _ in range(64):  # the same rate sustained: the queue it builds no longer fits
        t += 0.0004
        i = c.choose(1, now=t)
    assert i == 0


def test_a_burst_is_seen_within_16_arrivals_and_load_falling_steps_back_up():
    c = _controller(20)
    t = 0.0
    for _ in range(64):  # calm: 100/s, the largest variant is sustainable
        t += 0.01
        i = c.choose(1, now=t)
    assert i == 2
    for _ in range(16):  # a burst at 800/s: large and medium at 4x and 2x their capacity
        t += 0.00125
        i = c.choose(1, now=t)
    assert i == 0
    for _ in range(64):  # calm again
        t += 0.01
        i = c.choose(1, now=t)
    assert i == 2 and c.state()["arrival_rate"] == pytest.approx(100)


def test_workers_share_the_backlog():
    one, four = _controller(20, workers=1), _controller(20, workers=4)
    for c in (one, four):
        for _ in range(4):  # 20 ms of queued work
            c.admit(2, 1)
    assert one.choose(1) < four.choose(1) == 2


def test_observed_slowdown_prices_every_variant():
    c = _controller(20, period=8)
    for _ in range(400):  # the served variant runs 3x slower than calibrated (contention)
        tok = c.admit(0, 1)
        c.done(0, 1, tok, service_ms=3 * c._model(0, 1), total_ms=3 * c._model(0, 1) + 0.5)
    assert c.state()["contention"] == pytest.approx(3.0)
    assert c.state()["margin_ms"] == pytest.approx(0.5)  # what the mean prediction misses, once it is 3x
    assert c.choose(8) == 1  # large 12 ms x 3 > 20; medium 6 x 3 + 0.5 fits


def test_margin_is_the_p95_of_prediction_errors():
    c = _controller(20, period=10)
    errors = np.random.default_rng(0).exponential(2.0, 500)
    for e in errors:  # requests alone in the server: prediction = service; the rest is unmodelled time
        tok = c.admit(1, 1)
        c.done(1, 1, tok, service_ms=c._model(1, 1), total_ms=c._model(1, 1) + e)
    assert c.predict_ms(1, 1) - c._model(1, 1) == pytest.approx(np.quantile(errors, 0.95), rel=0.05)


def test_feedback_shrinks_the_target_when_observed_p95_misses_and_recovers():
    c = _controller(20, period=8)
    for _ in range(8):
        tok = c.admit(2, 1)
        c.done(2, 1, tok, service_ms=5.0, total_ms=30.0)  # unseen delay: the server saw 30 ms
    assert c.scale < 1.0
    low = c.scale
    for _ in range(200):
        tok = c.admit(0, 1)
        c.done(0, 1, tok, service_ms=1.1, total_ms=2.0)
    assert c.scale > low


@pytest.mark.parametrize("kw", [{"slo_ms": 0}, {"slo_ms": -1}, {"slo_ms": float("nan")}, {"slo_ms": "5"},
                                {"workers": 0}, {"target": 1.5}, {"horizon": -1}, {"horizon": "1"}])
def test_bad_settings_raise_config_error(kw):
    args = {"slo_ms": 10.0, "workers": 1, **kw}
    with pytest.raises(ConfigError):
        SLOController(NAMES, args.pop("slo_ms"), **args)


def test_server_in_slo_mode_reports_slo_metrics(tiny_bundle):
    pytest.importorskip("uvicorn")
    from slimkit.runtime.server import serve

    with serve(tiny_bundle, port=0, block=False, log_level="warning", slo_ms=50.0) as srv:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
        x = np.zeros((1, 16), np.float32)
        seen = set()
        for params in [{}, {}, {"budget": 0.5}, {"variant": "w8"}]:
            body = {"inputs": [{"name": "input", "shape": [1, 16], "datatype": "FP32", "data": x.ravel().tolist()}],
                    "parameters": params}
            conn.request("POST", "/v2/models/bundle/infer", json.dumps(body))
            r = conn.getresponse()
            variant = json.loads(r.read())["parameters"]["variant"]
            assert r.status == 200
            seen.add(variant)
            if params.get("budget") == 0.5:
                assert variant in ("w8", "w16")  # a budget caps the controller
            if "variant" in params:
                assert variant == "w8"  # a pinned variant is served as asked
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
        conn.close()
    assert "slimkit_slo_seconds 0.05" in text
    within = [ln for ln in text.splitlines() if ln.startswith("slimkit_slo_requests_total")]
    assert sum(float(ln.split()[-1]) for ln in within) == 4
    assert 'slimkit_slo_controller{quantity="scale"}' in text
    assert "slimkit_slo_accuracy_sum" in text
