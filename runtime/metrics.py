"""Prometheus metrics in the text exposition format (version 0.0.4), without a client library.

Counters and histograms keyed by label values. Updates are plain Python arithmetic and are meant to
happen on one thread (the server's event loop), so there are no locks on the hot path. Format:
https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from typing import TypeVar

__all__ = ["Counter", "Gauge", "Histogram", "Registry", "LATENCY_BUCKETS_S", "CONTENT_TYPE"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# 50 us .. 10 s: tiny models answer in tens of microseconds, batch requests in milliseconds
LATENCY_BUCKETS_S = (5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5,
                     1.0, 2.5, 5.0, 10.0)


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(str(v))}"' for n, v in zip(names, values)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _num(v: float) -> str:
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v)) if not float(v).is_integer() else str(int(v))


class _Family:
    kind = ""

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()):
        self.name, self.help, self.label_names = name, help, tuple(labels)

    def _head(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]

    def render(self) -> list[str]:
        """The family in Prometheus text format."""
        raise NotImplementedError


F = TypeVar("F", bound=_Family)


class Counter(_Family):
    """A monotonically increasing count per label tuple."""

    kind = "counter"

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()):
        super().__init__(name, help, labels)
        self.values: dict[tuple, float] = {}

    def inc(self, labels: tuple = (), amount: float = 1.0) -> None:
        """Add ``amount`` to the series of ``labels``."""
        self.values[labels] = self.values.get(labels, 0.0) + amount

    def render(self) -> list[str]:
        """The family in Prometheus text format, one line per series."""
        return self._head() + [f"{self.name}{_labels(self.label_names, k)} {_num(v)}"
                               for k, v in sorted(self.values.items())]


class Gauge(Counter):
    """A value that goes up and down (``set`` or ``inc`` with a negative amount).

    ``multiprocess`` says how several server processes' values merge (:mod:`~slimkit.runtime.metrics_share`):
    ``"livesum"`` (sum over live processes), ``"max"`` or ``"liveall"`` (one series per live process).
    """

    kind = "gauge"

    def __init__(self, name: str, help: str, labels: Sequence[str] = (), multiprocess: str = "livesum"):
        super().__init__(name, help, labels)
        self.multiprocess = multiprocess

    def set(self, value: float, labels: tuple = ()) -> None:
        """Set the series of ``labels`` to ``value``."""
        self.values[labels] = float(value)


class Histogram(_Family):
    """Observations counted into fixed cumulative buckets, plus their sum and count."""

    kind = "histogram"

    def __init__(self, name: str, help: str, labels: Sequence[str] = (),
                 buckets: Sequence[float] = LATENCY_BUCKETS_S):
        super().__init__(name, help, labels)
        self.bounds = tuple(sorted(buckets))
        self.series: dict[tuple, list] = {}  # labels -> [per-bucket counts (+Inf last), sum]

    def observe(self, value: float, labels: tuple = ()) -> None:
        """Count ``value`` into its bucket of the series of ``labels``."""
        s = self.series.get(labels)
        if s is None:
            s = self.series[labels] = [[0] * (len(self.bounds) + 1), 0.0]
        s[0][bisect.bisect_left(self.bounds, value)] += 1
        s[1] += value

    def render(self) -> list[str]:
        """The family in Prometheus text format: cumulative buckets, sum and count per series."""
        out = self._head()
        for k, (counts, total) in sorted(self.series.items()):
            cum = 0
            for bound, c in zip((*self.bounds, math.inf), counts):
                cum += c
                le = 'le="' + _num(bound) + '"'
                out.append(f"{self.name}_bucket{_labels(self.label_names, k, le)} {cum}")
            out.append(f"{self.name}_sum{_labels(self.label_names, k)} {_num(total)}")
            out.append(f"{self.name}_count{_labels(self.label_names, k)} {cum}")
        return out


class Registry:
    """An ordered set of metric families rendered together for ``GET /metrics``."""

    def __init__(self) -> None:
        self.families: list[_Family] = []

    def add(self, family: F) -> F:
        """Register ``family`` (names are unique) and return it."""
        if any(f.name == family.name for f in self.families):
            raise ValueError(f"metric {family.name!r} is already registered")
        self.families.append(family)
        return family

    def render(self) -> bytes:
        """Every family in Prometheus text format, as the body of ``GET /metrics``."""
        lines: list[str] = []
        for f in self.families:
            lines.extend(f.render())
        return ("\n".join(lines) + "\n").encode()


class ServerMetrics:
    """The inference server's metric set (names follow Prometheus conventions, ``slimkit_`` prefix).

    Per variant: requests, samples, server latency and inference time histograms. Per endpoint and
    status code: HTTP responses (errors included). In SLO mode also: the objective, requests within it,
    and the sum of the serving variants' accuracies over requests answered within it, so that
    ``slimkit_slo_accuracy_sum / slimkit_slo_requests_total`` is the effective accuracy (accuracy of
    answers delivered within the deadline).
    """

    def __init__(self, model: str, variants: Sequence[str], accuracy: Sequence[float], controller=None):
        r = self.registry = Registry()
        self.model = model
        self.controller = controller
        self.accuracy = list(accuracy)
        self._vl = [(model, v) for v in variants]
        self.requests = r.add(Counter("slimkit_infer_requests_total", "Inference requests answered, by variant.",
                                      ("model", "variant")))
        self.samples = r.add(Counter("slimkit_infer_samples_total", "Samples (batch rows) inferred, by variant.",
                                     ("model", "variant")))
        self.latency = r.add(Histogram("slimkit_request_latency_seconds",
                                       "Server time per inference request, body read to response written.",
                                       ("model", "variant")))
        self.inference = r.add(Histogram("slimkit_inference_seconds", "Model run time per inference request.",
                                         ("model", "variant")))
        self.responses = r.add(Counter("slimkit_http_responses_total", "HTTP responses by endpoint and status code.",
                                       ("endpoint", "code")))
        self.errors = r.add(Counter("slimkit_request_errors_total", "Error responses (4xx/5xx) by status code.",
                                    ("model", "code")))
        self.in_flight_g = r.add(Gauge("slimkit_in_flight_requests", "Inference requests being served now."))
        self.in_flight = 0
        if controller is not None:
            self.slo = r.add(Gauge("slimkit_slo_seconds", "The latency objective (SLO mode).", multiprocess="max"))
            self.slo.set(controller.slo_ms / 1e3)
            self.slo_total = r.add(Counter("slimkit_slo_requests_total",
                                           "Inference requests by whether the server answered within the SLO.",
                                           ("model", "within")))
            self.slo_acc = r.add(Counter("slimkit_slo_accuracy_sum",
                                         "Sum of the serving variant's accuracy over requests answered within the "
                                         "SLO; divide by slimkit_slo_requests_total for effective accuracy.",
                                         ("model",)))
            self.ctrl_g = r.add(Gauge("slimkit_slo_controller", "SLO controller state (per worker process with "
                                      "several).", ("quantity",), multiprocess="liveall"))

    def infer(self, i: int, n: int, service_s: float, total_s: float) -> None:
        labels = self._vl[i]
        self.requests.inc(labels)
        self.samples.inc(labels, n)
        self.latency.observe(total_s, labels)
        self.inference.observe(service_s, labels)
        self.responses.inc(("infer", "200"))
        if self.controller is not None:
            within = total_s * 1e3 <= self.controller.slo_ms
            self.slo_total.inc((self.model, "true" if within else "false"))
            if within and self.accuracy[i] == self.accuracy[i]:  # skip NaN (no accuracy in the manifest)
                self.slo_acc.inc((self.model,), self.accuracy[i])

    def http(self, endpoint: str, status: int) -> None:
        code = str(status)
        self.responses.inc((endpoint, code))
        if status >= 400:
            self.errors.inc((self.model, code))

    def refresh(self) -> None:
        """Copy the live values (in-flight count, controller state) into their gauges."""
        self.in_flight_g.set(self.in_flight)
        if self.controller is not None:
            for k, v in self.controller.state().items():
                self.ctrl_g.set(v, (k,))

    def render(self) -> bytes:
        self.refresh()
        return self.registry.render()
