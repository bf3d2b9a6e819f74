"""``runtime.serve``: a bundle behind the KServe v2 / Triton HTTP protocol, with budgets and SLO control.

The stack is chosen for speed: a raw ASGI application (:class:`~slimkit.runtime.app.InferenceApp`, which
holds the endpoints, auth, body limits and inference in a thread pool) run by uvicorn with its
``httptools`` parser and the ``uvloop`` event loop. ``workers > 1`` starts that many processes on one
socket (uvicorn's supervisor), each with its own engine and controller; ``/metrics`` merges every
worker's metrics (:mod:`slimkit.runtime.metrics_share`).

Manners: binds 127.0.0.1 unless told otherwise; every option is checked before anything binds; SIGTERM
stops accepting, lets in-flight requests finish, then exits.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from dataclasses import asdict
from typing import Any

from .app import InferenceApp
from .errors import ConfigError, require
from .serve_config import ServeConfig

__all__ = ["ServeConfig", "InferenceApp", "RunningServer", "serve", "build_app"]

_ENV = "SLIMKIT_SERVE_CONFIG"  # how `workers > 1` hands the config to each worker process
_METRICS_ENV = "SLIMKIT_SERVE_METRICS_DIR"  # where the workers share their metrics snapshots


# -- running it ----------------------------------------------------------------------------------------
def build_app(cfg: ServeConfig) -> InferenceApp:
    """The ASGI app for ``cfg`` (for running under another ASGI server, e.g. ``uvicorn --factory``)."""
    return InferenceApp(cfg)


def _worker_app() -> InferenceApp:
    """App factory for worker processes (``workers > 1``): the config comes in an environment variable."""
    return InferenceApp(ServeConfig(**json.loads(os.environ[_ENV])), metrics_dir=os.environ.get(_METRICS_ENV))


def _uvicorn_options(host: str, port: int, log_level: str) -> dict[str, Any]:
    require("uvicorn", "serve")
    require("httptools", "serve")
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"  # uvloop has no Windows build
    return {"host": host, "port": port, "loop": loop, "http": "httptools", "lifespan": "on",
            "access_log": False, "log_level": log_level, "server_header": False,
            "timeout_graceful_shutdown": 30, "backlog": 4096}


class RunningServer:
    """A server running in a background thread (``serve(..., block=False)``); a context manager.

    Attributes:
        url: ``http://host:port`` to send requests to.
        app: the :class:`InferenceApp` (its ``metrics`` and ``controller`` are live).
    """

    def __init__(self, app: InferenceApp, host: str, port: int, log_level: str):
        import uvicorn

        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        self.host, self.port = host, sock.getsockname()[1]
        self.url = f"http://{host if ':' not in host else f'[{host}]'}:{self.port}"
        self.app = app
        self._server = uvicorn.Server(uvicorn.Config(app, **_uvicorn_options(host, self.port, log_level)))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name="slimkit-serve", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ConfigError(f"the server did not start on {host}:{self.port}; see the log above")
            time.sleep(0.01)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop accepting, finish in-flight requests, shut down (like SIGTERM)."""
        self._server.should_exit = True
        self._thread.join(timeout)

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def serve(bundle: str | os.PathLike, host: str = "127.0.0.1", port: int = 8000, *, name: str | None = None,
          workers: int = 1, threads: int | None = None, slo_ms: float | None = None, token: str | None = None,
          max_body_bytes: int = 16 << 20, inline_us: float = 100.0, log_level: str = "info",
          block: bool = True, slo_min_gain: float = 0.005, share_weights: bool | None = None) -> RunningServer | None:
    """Serve a bundle over the KServe v2 / Triton HTTP protocol until SIGTERM or Ctrl-C.

    Args:
        bundle: a bundle directory (``export.bundle``).
        host: the address to bind; the default accepts local connections only. Use ``"0.0.0.0"`` to
            accept from the network (then also set ``token``).
        port: the TCP port (0 picks a free one; with ``block=False`` read it from ``.port``).
        name: the model name in URLs (default: the bundle directory's name).
        workers: processes sharing the socket, each with its own engine (``block`` must be True).
        threads: inference threads per process (default: the CPU count).
        slo_ms: SLO mode: requests that do not pin a ``variant`` get the largest variant whose predicted
            latency keeps the server's p95 under ``slo_ms`` at the current queue (a request's
            ``budget`` or ``latency_ms`` then caps the choice); see :mod:`slimkit.runtime.controller`.
        token: require ``Authorization: Bearer <token>`` on every endpoint but health.
        slo_min_gain: SLO mode serves a costlier variant only if its manifest accuracy beats every
            cheaper candidate's by at least this (default half a point; 0: any gain).
        max_body_bytes: request bodies above this get 413.
        inline_us: a request alone in the server and predicted to compute for at most this many
            microseconds runs on the event loop instead of the pool (0: always the pool); see
            :class:`ServeConfig`.
        log_level: uvicorn's log level.
        block: False starts the server in a background thread and returns a :class:`RunningServer`.
        share_weights: one copy of the weights for every variant (``runtime.load``'s option).

    Raises:
        BundleError, ConfigError: a bad bundle or option (before anything binds).
        MissingExtraError: the server stack is missing: ``pip install "slimkit[serve]"``.

    Example:
        >>> from slimkit import runtime
        >>> runtime.serve("out/bundle", port=8000)          # doctest: +SKIP
        >>> with runtime.serve("out/bundle", port=0, block=False) as srv:   # doctest: +SKIP
        ...     print(srv.url)
    """
    cfg = ServeConfig(os.fspath(bundle), name=name, threads=threads, slo_ms=slo_ms, token=token,
                      max_body_bytes=max_body_bytes, inline_us=inline_us, slo_min_gain=slo_min_gain,
                      share_weights=share_weights)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be a positive int, got {workers!r}")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigError(f"port must be an int in [0, 65535] (0: any free port), got {port!r}")
    require("uvicorn", "serve")
    if not block:
        if workers != 1:
            raise ConfigError("block=False runs one process in a thread; pass workers=1 (or block=True)")
        return RunningServer(InferenceApp(cfg), host, port, log_level)
    import uvicorn

    if workers == 1:
        server = uvicorn.Server(uvicorn.Config(InferenceApp(cfg), **_uvicorn_options(host, port, log_level)))
    else:
        InferenceApp(cfg)  # fail here, once, on a bad bundle or option, not in every worker
        os.environ[_ENV] = json.dumps(asdict(cfg))
        os.environ[_METRICS_ENV] = tempfile.mkdtemp(prefix="slimkit-metrics-")
        server = None
    # uvicorn re-raises the stop signal after its graceful shutdown; a no-op handler makes that a clean exit
    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        if server is not None:
            server.run()
        else:
            uvicorn.run("slimkit.runtime.server:_worker_app", factory=True, workers=workers,
                        **_uvicorn_options(host, port, log_level))
    finally:
        signal.signal(signal.SIGTERM, previous)
        if server is None:
            shutil.rmtree(os.environ.pop(_METRICS_ENV), ignore_errors=True)
    return None

