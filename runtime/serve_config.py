"""``ServeConfig``: the options of :func:`slimkit.runtime.server.serve`, validated, as plain data."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

__all__ = ["ServeConfig"]


@dataclass
class ServeConfig:
    """Everything :func:`serve` needs; JSON-serialisable so worker processes can rebuild the app.

    Attributes:
        bundle: the bundle directory.
        name: the model name in URLs (default: the bundle directory's name).
        threads: inference threads (default: the CPU count).
        slo_ms: serve in SLO mode with this server-side p95 latency objective.
        slo_target: the controller aims predicted p95 at ``slo_target * slo_ms``.
        slo_min_gain: in SLO mode, a costlier variant is served only if its manifest accuracy is at least
            this much higher than a cheaper one's (see :class:`~slimkit.runtime.controller.SLOController`).
        token: require ``Authorization: Bearer <token>`` on every non-health endpoint.
        max_body_bytes: larger request bodies get 413.
        backend: the engine backend (``"onnxruntime"``).
        inline_us: a request that is alone in the server and whose predicted inference time is at
            most this runs on the event loop itself, because a hop to a pool thread costs more than
            such a model (bench/serve/RESULTS.md: 1.3x throughput at concurrency 1); with other
            requests in the server the pool wins, as inference then overlaps their parsing. 0 sends
            every request to the pool.
        share_weights: one copy of the weights for every variant (``runtime.load``'s option; None:
            the backend's default, a copy per variant on onnxruntime).
    """

    bundle: str
    name: str | None = None
    threads: int | None = None
    slo_ms: float | None = None
    slo_target: float = 0.8
    slo_min_gain: float = 0.005
    token: str | None = None
    max_body_bytes: int = 16 << 20
    backend: str = "onnxruntime"
    inline_us: float = 100.0
    share_weights: bool | None = None

    def __post_init__(self) -> None:
        self.bundle = os.fspath(self.bundle)
        if self.name is None:
            self.name = Path(self.bundle).resolve().name
        if not isinstance(self.name, str) or not self.name or "/" in self.name:
            raise ConfigError(f"model name must be a non-empty string without '/', got {self.name!r}")
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int)
                                         or self.threads < 1):
            raise ConfigError(f"threads must be a positive int, got {self.threads!r}")
        if isinstance(self.max_body_bytes, bool) or not isinstance(self.max_body_bytes, int) or self.max_body_bytes < 1024:
            raise ConfigError(f"max_body_bytes must be an int >= 1024, got {self.max_body_bytes!r}")
        if isinstance(self.inline_us, bool) or not isinstance(self.inline_us, (int, float)) or not self.inline_us >= 0:
            raise ConfigError(f"inline_us must be a number >= 0, got {self.inline_us!r}")
        if self.share_weights is not None and not isinstance(self.share_weights, bool):
            raise ConfigError(f"share_weights must be True, False or None, got {self.share_weights!r}")
        if self.token is not None and (not isinstance(self.token, str) or not self.token.strip()):
            raise ConfigError("token must be a non-empty string (or None for no authentication)")
