"""Queue-aware SLO control: serve the largest variant whose predicted latency keeps p95 under the SLO.

The policy follows the model-switching line of serving work: switch to cheaper variants of a model
during load spikes and back when load falls (Zhang et al., "Model-Switching: Dealing with Fluctuating
Workloads in Machine-Learning-as-a-Service Systems", HotCloud 2020), choosing per request from the
remaining slack as SuperServe's SlackFit does (Khare et al., "SuperServe: Fine-Grained Inference
Serving for Unpredictable Workloads", NSDI 2025). Both report SLO attainment and *effective accuracy*
(the accuracy of answers delivered within the deadline); the server exports both.

How a request is placed (all on the event-loop thread, O(variants) arithmetic):

* Each variant's service time at batch ``n`` is modelled as ``a + b * n`` from a short timing at start
  (:meth:`SLOController.calibrate`), multiplied by a shared *contention factor*: the mean of observed /
  modelled service time over recent requests, so that CPU contention seen on the variants being served
  also prices the ones not served right now (``service_mean``).
* The backlog is the predicted mean service of every admitted, unfinished request; a new request waits
  about ``backlog / workers``.
* The arrival rate ``lam`` is measured over the last ``rate_window`` arrivals and, for a fast attack,
  over the last 16. At rate ``lam`` variant ``i`` runs at utilization
  ``rho_i = lam * service_mean_i / workers``; where ``rho_i > 1`` its queue grows by ``(rho_i - 1)`` ms per
  ms, so the controller adds ``(rho_i - 1) * held`` to the predicted wait: a fluid model of the queue if
  the rate lasts for ``held``, as long as it has been observed (the window's time span), at most
  ``horizon`` latency targets. The larger of the two windows' charges counts. Without this look-ahead the
  greedy slack rule fills the queue with the largest variant and then has room only for the smallest,
  oscillating between the two under a burst. A hard utilization cap instead over-reacts the other way:
  the 16-arrival rate of a Poisson stream at 0.7 utilization reads above 1 every few hundred requests,
  and a client that falls behind sends clumps at several times the mean rate; bounding ``held`` by the
  span charges such a clump the few milliseconds of queue it can actually build, which the slack absorbs.
* Only variants on the accuracy frontier are candidates: when the manifest gives accuracies, a variant
  that costs more than a cheaper candidate without being at least ``min_gain`` more accurate is never
  chosen. It would spend latency budget, and under load push later requests down to a much worse
  variant, for a gain smaller than the noise of a validation estimate (1,000 samples: +-0.4 points).
* The request gets the largest candidate (at most ``cap``, from its own budget) with
  ``backlog / workers + service_mean + growth + margin <= limit`` (``limit = target * slo * scale``);
  if none fits, the smallest.
* ``margin`` is split-conformal: the 95th percentile of recent prediction errors (server time minus the
  mean prediction ``backlog / workers + service_mean`` made when the request was admitted), so it covers
  time outside inference, service-time spread and queue-model error as they are, not as a sum of
  separate 95th percentiles. Added to it is the p95 of the event loop's lag (sampled by the server every
  5 ms): while the loop runs late, requests wait unseen in socket buffers, outside the server's timing.
* ``scale`` closes the loop on what the server observes: every ``period`` requests, when the observed
  p95 server latency exceeds ``target * slo`` it shrinks (x0.85, down to 0.2); when it is under half of
  that it grows back (x1.05, up to 1).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Mapping, Sequence

from .errors import ConfigError

__all__ = ["SLOController", "measure_service"]


def _frontier(accuracy: Sequence[float] | None, k: int, min_gain: float = 0.0) -> list[int]:
    """Indices (cheapest first) of the variants more than ``min_gain`` more accurate than every cheaper
    candidate; all when accuracies are unknown."""
    if accuracy is None:
        return list(range(k))
    keep, best = [0], accuracy[0]
    for i in range(1, k):
        a = accuracy[i]
        if math.isnan(a) or math.isnan(best) or a > best + min_gain:
            keep.append(i)
            best = a if not math.isnan(a) else best
    return keep


def _quantile(values: Sequence[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else 0.0


class SLOController:
    """Pick a variant per request so that the server's p95 latency stays under ``slo_ms``.

    Args:
        names: variant names, cheapest first (``Engine.names``).
        slo_ms: the latency objective in milliseconds (server-side: request read to response written).
        workers: inference threads that drain the queue in parallel.
        target: aim the predicted p95 at ``target * slo_ms``, leaving room for time the server cannot
            see (socket queues, client) and for prediction error.
        window: recent requests kept for the quantiles.
        period: requests between refreshes of the quantiles and the feedback ``scale``.
        horizon: the longest (in latency targets) an observed arrival rate is assumed to last when the
            queue an overloaded variant would build is charged to its predicted wait (a rate is never
            assumed to last longer than it has been observed); 0 ignores the arrival rate.
        rate_window: arrivals over which the arrival rate is measured.
        accuracy: each variant's accuracy, in ``names`` order (NaN where unknown). A variant not at
            least ``min_gain`` more accurate than every cheaper candidate is skipped. ``None``: every
            variant is a candidate.
        min_gain: the accuracy (fraction) a costlier variant must add to be worth serving (default 0.005,
            half a point; 0 keeps every strictly better variant).

    Example:
        >>> c = SLOController(["small", "big"], slo_ms=10, workers=2)
        >>> c.calibrate({"small": {1: 0.5, 8: 1.0}, "big": {1: 2.0, 8: 6.0}})
        >>> c.choose(1)
        1
    """

    def __init__(self, names: Sequence[str], slo_ms: float, *, workers: int = 1, target: float = 0.8,
                 window: int = 512, period: int = 32, horizon: float = 1.0, rate_window: int = 64,
                 accuracy: Sequence[float] | None = None, min_gain: float = 0.005):
        if isinstance(slo_ms, bool) or not isinstance(slo_ms, (int, float)) or not (slo_ms > 0 and math.isfinite(slo_ms)):
            raise ConfigError(f"slo_ms must be a positive number of milliseconds, got {slo_ms!r}")
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ConfigError(f"workers must be a positive int, got {workers!r}")
        if not 0 < target <= 1:
            raise ConfigError(f"target must be in (0, 1], got {target!r}")
        if isinstance(horizon, bool) or not isinstance(horizon, (int, float)) or not 0 <= horizon < math.inf:
            raise ConfigError(f"horizon must be a non-negative number of latency targets, got {horizon!r}")
        if not names:
            raise ConfigError("the controller needs at least one variant")
        self.names = list(names)
        if accuracy is not None and len(accuracy) != len(self.names):
            raise ConfigError(f"accuracy needs one value per variant ({len(self.names)}), got {len(accuracy)}")
        if isinstance(min_gain, bool) or not isinstance(min_gain, (int, float)) or not 0 <= min_gain < 1:
            raise ConfigError(f"min_gain must be an accuracy difference in [0, 1), got {min_gain!r}")
        self.candidates = _frontier(accuracy, len(self.names), float(min_gain))  # ascending; 0 always in
        self.slo_ms = float(slo_ms)
        self.workers = workers
        self.target = target
        self.period = period
        k = len(self.names)
        self.intercept_ms = [0.0] * k  # service model a + b*n per variant (ms), before contention
        self.slope_ms = [0.0] * k
        self.scale = 1.0
        self.backlog_ms = 0.0
        self.in_flight = 0
        self._ratios: deque[float] = deque(maxlen=window)    # observed / modelled service
        self._errors: deque[float] = deque(maxlen=window)    # server time - mean prediction at admission (ms)
        self._totals: deque[float] = deque(maxlen=window)     # server time per request (ms)
        self._kmean = 1.0
        self._margin = 0.0
        self._since = 0
        self.horizon = float(horizon)
        self._arrivals: deque[float] = deque(maxlen=rate_window)
        self._lags: deque[float] = deque(maxlen=200)  # event-loop lag samples (ms), ~1 s of them

    # -- model -----------------------------------------------------------------------------------------
    def calibrate(self, service_ms: Mapping[str, Mapping[int, float]]) -> None:
        """Set each variant's service model from timings ``{name: {batch: ms}}`` (one or more batches)."""
        for i, name in enumerate(self.names):
            pts = sorted((int(b), float(ms)) for b, ms in service_ms[name].items())
            if len(pts) == 1:
                self.intercept_ms[i], self.slope_ms[i] = 0.0, pts[0][1] / pts[0][0]
            else:
                (b0, t0), (b1, t1) = pts[0], pts[-1]
                slope = max((t1 - t0) / (b1 - b0), 0.0)
                self.intercept_ms[i], self.slope_ms[i] = max(t0 - slope * b0, 0.0), slope

    def _model(self, i: int, n: int) -> float:
        return self.intercept_ms[i] + self.slope_ms[i] * n

    def predict_ms(self, i: int, n: int) -> float:
        """Predicted p95 server latency of a request of ``n`` samples on variant ``i``, admitted now."""
        return self._margin + self.backlog_ms / self.workers + self._model(i, n) * self._kmean

    # -- per request -------------------------------------------------------------------------------------
    def choose(self, n: int, cap: int | None = None, now: float | None = None) -> int:
        """Index of the variant for a request of ``n`` samples (at most ``cap``, default the largest).

        ``now`` (seconds, monotonic) is the arrival time; default ``time.monotonic()``.
        """
        arrivals = self._arrivals
        arrivals.append(time.monotonic() if now is None else now)
        top = len(self.names) - 1 if cap is None else cap
        limit = self.target * self.slo_ms * self.scale
        wait = self._margin + self.backlog_ms / self.workers
        kmean, ahead = self._kmean, self.horizon * limit
        # (utilization per ms of modelled service, ms the rate is assumed to last) for the long window and,
        # fast attack, the last 16 arrivals: a rate is trusted for as long as it was observed, up to `ahead`
        per_ms = kmean / (1e3 * self.workers)
        windows = []
        if ahead > 0:
            for k in (len(arrivals),) + ((16,) if len(arrivals) > 16 else ()):
                rate, span = self._window(k)
                if span > 0:
                    windows.append((rate * per_ms, min(ahead, span * 1e3)))
        for i in reversed(self.candidates):
            if i > top or i == 0:
                continue
            service = self._model(i, n)
            growth = 0.0  # the queue it builds
            for busy, held in windows:
                growth = max(growth, (service * busy - 1.0) * held)
            if wait + growth + service * kmean <= limit:
                return i
        return 0

    def _window(self, k: int) -> tuple[float, float]:
        """(arrivals per second, span in seconds) over the last ``k`` arrivals; (0, 0) below two."""
        a = self._arrivals
        span = a[-1] - a[-k] if 1 < k <= len(a) else 0.0
        return ((k - 1) / span if span > 0 else 0.0), span

    def _rate(self) -> float:
        """Arrivals per second over the rate window."""
        return self._window(len(self._arrivals))[0]

    def admit(self, i: int, n: int) -> tuple[float, float]:
        """Count a request on variant ``i`` into the backlog; pass the returned token to :meth:`done`."""
        cost = self._model(i, n) * self._kmean
        expected = self.backlog_ms / self.workers + cost  # mean prediction of its server time
        self.backlog_ms += cost
        self.in_flight += 1
        return cost, expected

    def observe_lag(self, lag_ms: float) -> None:
        """Record how late the event loop ran a timer (the server samples it every few ms)."""
        self._lags.append(max(lag_ms, 0.0))

    def cancel(self, token: tuple[float, float]) -> None:
        """Take a request that failed out of the backlog."""
        self.backlog_ms = max(self.backlog_ms - token[0], 0.0)
        self.in_flight -= 1

    def done(self, i: int, n: int, token: tuple[float, float], service_ms: float, total_ms: float) -> None:
        """Record a finished request: its inference time and its whole server time."""
        self.backlog_ms = max(self.backlog_ms - token[0], 0.0)
        self.in_flight -= 1
        model = self._model(i, n)
        if model > 0:
            self._ratios.append(service_ms / model)
        self._errors.append(total_ms - token[1])
        self._totals.append(total_ms)
        self._since += 1
        if self._since >= self.period:
            self._refresh()

    def _refresh(self) -> None:
        self._since = 0
        if self._ratios:
            self._kmean = max(sum(self._ratios) / len(self._ratios), 0.5)
        # split-conformal margin: the p95 of recent prediction errors, plus the event loop's lag p95
        # (time requests wait unseen in socket buffers, outside the server time the errors measure)
        self._margin = max(_quantile(self._errors, 0.95), 0.0) + _quantile(self._lags, 0.95)
        p95 = _quantile(list(self._totals)[-4 * self.period:], 0.95)
        goal = self.target * self.slo_ms
        if p95 > goal:
            self.scale = max(self.scale * 0.85, 0.2)
        elif p95 < 0.5 * goal:
            self.scale = min(self.scale * 1.05, 1.0)

    def state(self) -> dict[str, float]:
        """Numbers for metrics and logs: scale, backlog, in-flight, contention and overhead estimates."""
        return {"scale": self.scale, "backlog_ms": self.backlog_ms, "in_flight": self.in_flight,
                "arrival_rate": self._rate(),
                "contention": self._kmean, "margin_ms": self._margin}


def measure_service(engine) -> dict[str, dict[int, float]]:
    """p95 service time (ms) of each variant of an ``Engine`` at batch 1 and 16, for :meth:`calibrate`."""
    try:
        res = engine.measure_latency(batches=(1, 16), repeats=40, warmup=5)
    except ConfigError as e:
        raise ConfigError(f"SLO mode times each variant at start and could not: {e}") from None
    return {n: {b: r["p95_ms"] for b, r in per.items()} for n, per in res.items()}
