"""``InferenceApp``: the raw ASGI application behind :func:`slimkit.runtime.serve` (no web framework).

The event loop only parses, routes and encodes; inference runs in a thread pool, because ONNX Runtime
releases the GIL while it computes, so requests run in parallel on the cores while the loop keeps
accepting. A request alone in the server and predicted to be cheap runs inline instead (``inline_us``).
:mod:`slimkit.runtime.server` runs this app under uvicorn.

Endpoints (see :mod:`slimkit.runtime.protocol` for the wire format)::

    GET  /v2/health/live  /v2/health/ready  /v2                 no token needed for health
    GET  /v2/models/{name}[/versions/1]  .../ready              metadata: inputs, outputs, variants
    POST /v2/models/{name}[/versions/1]/infer                   parameters: budget | variant | latency_ms
    GET  /metrics                                               Prometheus text format

Manners: bodies over ``max_body_bytes`` get 413 (checked before reading, and again while reading, and
after decompressing gzip/deflate bodies); with ``token`` every non-health endpoint needs
``Authorization: Bearer <token>`` (401 otherwise); a bad request gets a 4xx and a bug a 500, and the
server keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .controller import SLOController, measure_service
from .engine import Engine, load
from .errors import ConfigError, SlimkitError
from .feeds import batch_size
from .metrics import CONTENT_TYPE, ServerMetrics
from .metrics_share import SharedMetrics
from .protocol import (
    HTTPError,
    decode_body,
    decode_infer_request,
    encode_infer_response,
    error_body,
    model_metadata,
    too_large,
)
from .serve_config import ServeConfig

__all__ = ["InferenceApp"]

_JSON = b"application/json"
_log = logging.getLogger("slimkit.serve")


class InferenceApp:
    """The raw ASGI application: routes, auth, body limits, inference in a thread pool, metrics."""

    def __init__(self, cfg: ServeConfig, engine: Engine | None = None, metrics_dir: str | None = None):
        self.cfg = cfg
        self.engine = engine if engine is not None else load(cfg.bundle, backend=cfg.backend, threads=1,
                                                             share_weights=cfg.share_weights)
        if len(self.engine.manifest.outputs) < 1:
            raise ConfigError("the bundle declares no outputs")
        assert cfg.name is not None, "ServeConfig names the model after the bundle when no name is given"
        self.name: str = cfg.name
        self.threads = cfg.threads or os.cpu_count() or 1
        self.pool = ThreadPoolExecutor(self.threads, thread_name_prefix="slimkit-infer")
        self.specs = self.engine.inputs  # one, or several (input_ids, attention_mask): each named in a request
        self.names = self.engine.names
        self.index = {n: i for i, n in enumerate(self.names)}
        self.outputs = [s.name for s in self.engine.manifest.outputs]
        self.accuracy = [float(v.metrics.get("accuracy", float("nan"))) for v in self.engine.variants]
        self.controller = None
        if cfg.slo_ms is not None:
            self.controller = SLOController(self.names, cfg.slo_ms, workers=self.threads, target=cfg.slo_target,
                                            accuracy=self.accuracy, min_gain=cfg.slo_min_gain)
            self.controller.calibrate(measure_service(self.engine))
        self.metrics = ServerMetrics(self.name, self.names, self.accuracy, self.controller)
        self.shared = SharedMetrics(metrics_dir, self.metrics) if metrics_dir else None
        # per-variant running mean of inference seconds per sample; unknown (inf) until first measured
        self._per_sample_s = [float("inf")] * len(self.names)
        self._inline_s = cfg.inline_us * 1e-6
        self.ready = False
        self._token = f"Bearer {cfg.token}".encode() if cfg.token else None
        self._metadata = json.dumps(model_metadata(self.name, self.engine.manifest)).encode()
        self._server_meta = json.dumps({"name": "slimkit", "version": _version(),
                                        "extensions": ["binary_tensor_data"]}).encode()
        base = f"/v2/models/{self.name}"
        self._routes = {"/v2/health/live": "live", "/v2/health/ready": "ready", "/v2": "server",
                        "/metrics": "metrics", base: "metadata", f"{base}/versions/1": "metadata",
                        f"{base}/ready": "model_ready", f"{base}/versions/1/ready": "model_ready",
                        f"{base}/infer": "infer", f"{base}/versions/1/infer": "infer"}

    # -- ASGI -----------------------------------------------------------------------------------------
    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        """The ASGI entry point: HTTP requests and the lifespan protocol."""
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Callable, send: Callable) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                loop = asyncio.get_running_loop()
                self._tasks = [loop.create_task(self._watch_lag(self.controller))] if self.controller else []
                if self.shared is not None:
                    self._tasks.append(loop.create_task(self.shared.run()))
                self.ready = True
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                self.ready = False
                for task in self._tasks:
                    task.cancel()
                self.pool.shutdown(wait=True)
                if self.shared is not None:  # the final counts stay in the merge after this process exits
                    with contextlib.suppress(OSError):  # the supervisor may be removing the directory
                        self.shared.write()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _watch_lag(self, controller: SLOController, period: float = 0.005) -> None:
        """Feed the controller the event loop's lag: while the loop runs late, new requests wait in
        socket buffers where the server cannot time them."""
        while True:
            t = time.perf_counter()
            await asyncio.sleep(period)
            controller.observe_lag((time.perf_counter() - t - period) * 1e3)

    async def _http(self, scope: dict, receive: Callable, send: Callable) -> None:
        t0 = time.perf_counter()
        path, method = scope["path"], scope["method"]
        route = self._routes.get(path)
        try:
            if route is None:
                raise self._not_found(path)
            if route == "infer":
                if method != "POST":
                    raise _method_not_allowed(method, "POST")
                self._auth(scope)
                self.metrics.in_flight += 1
                try:
                    await self._infer(scope, receive, send, t0)
                finally:
                    self.metrics.in_flight -= 1
                return
            if method not in ("GET", "HEAD"):
                raise _method_not_allowed(method, "GET")
            if route not in ("live", "ready"):
                self._auth(scope)
            status, body, ctype = self._get(route)
            await _respond(send, status, body, ctype)
            self.metrics.http(route, status)
        except HTTPError as e:
            await _respond(send, e.status, error_body(str(e)), _JSON, e.headers)
            self.metrics.http(route or "other", e.status)
        except Exception as e:  # a bug, not the client's fault: answer 500 and keep serving
            _log.exception("unexpected error on %s %s", method, path)
            await _respond(send, 500, error_body(f"internal error: {type(e).__name__}: {e}"), _JSON)
            self.metrics.http(route or "other", 500)

    def _get(self, route: str) -> tuple[int, bytes, bytes]:
        if route == "live":
            return 200, b'{"live":true}', _JSON
        if route == "ready":
            return (200, b'{"ready":true}', _JSON) if self.ready else (503, b'{"ready":false}', _JSON)
        if route == "metadata":
            return 200, self._metadata, _JSON
        if route == "model_ready":
            return (200 if self.ready else 503), json.dumps({"name": self.name, "ready": self.ready}).encode(), _JSON
        if route == "metrics":
            body = self.shared.render() if self.shared is not None else self.metrics.render()
            return 200, body, CONTENT_TYPE.encode()
        return 200, self._server_meta, _JSON

    def _not_found(self, path: str) -> HTTPError:
        if path.startswith("/v2/models/"):
            return HTTPError(404, f"unknown model in {path!r}; this server serves {self.name!r} "
                                  f"(GET /v2/models/{self.name})")
        return HTTPError(404, f"no endpoint {path!r}; see /v2/health/ready, /v2/models/{self.name}, "
                              f"/v2/models/{self.name}/infer and /metrics")

    def _auth(self, scope: dict) -> None:
        if self._token is None:
            return
        for k, v in scope["headers"]:
            if k == b"authorization":
                if hmac.compare_digest(v, self._token):
                    return
                raise HTTPError(401, "wrong bearer token", {b"www-authenticate": b'Bearer error="invalid_token"'})
        raise HTTPError(401, "this server needs a token: send the header 'Authorization: Bearer <token>'",
                        {b"www-authenticate": b"Bearer"})

    # -- inference ------------------------------------------------------------------------------------
    async def _infer(self, scope: dict, receive: Callable, send: Callable, t0: float) -> None:
        body, header_length = await self._read_body(scope, receive)
        req = decode_infer_request(body, header_length, self.specs)
        n = batch_size(self.specs, req.x)
        i = self._pick(req.selector, n)
        ctrl = self.controller
        token = ctrl.admit(i, n) if ctrl else None
        try:
            # alone in the server and cheaper than a hop to a pool thread: run it right here; with
            # other requests in the server, the pool lets inference overlap with their parsing
            if self.metrics.in_flight == 1 and n * self._per_sample_s[i] <= self._inline_s:
                ys, service = self._run(req.x, self.names[i])
            else:
                ys, service = await asyncio.get_running_loop().run_in_executor(
                    self.pool, self._run, req.x, self.names[i])
        except Exception as e:
            if ctrl is not None and token is not None:
                ctrl.cancel(token)
            if isinstance(e, SlimkitError):
                raise HTTPError(400, str(e)) from None
            if type(e).__name__ in ("InvalidArgument", "InvalidGraph"):  # onnxruntime rejected the input
                raise HTTPError(400, f"the model rejected the input: {e}") from None
            raise HTTPError(500, f"inference failed: {type(e).__name__}: {e}") from None
        out, hl = encode_infer_response(self.name, req, dict(zip(self.outputs, ys)), {"variant": self.names[i]})
        headers = {b"inference-header-content-length": str(hl).encode()} if hl is not None else None
        await _respond(send, 200, out, b"application/octet-stream" if hl is not None else _JSON, headers)
        total = time.perf_counter() - t0
        if n:
            old = self._per_sample_s[i]
            self._per_sample_s[i] = service / n if old == float("inf") else old + 0.1 * (service / n - old)
        if ctrl is not None and token is not None:
            ctrl.done(i, n, token, service * 1e3, total * 1e3)
        self.metrics.infer(i, n, service, total)

    def _run(self, x: Any, variant: str) -> tuple[list, float]:
        t = time.perf_counter()
        ys = self.engine.run_all(x, variant=variant)
        return ys, time.perf_counter() - t

    def _pick(self, selector: dict, n: int) -> int:
        try:
            chosen = self.engine.select(**selector).name if selector else None
        except SlimkitError as e:
            raise HTTPError(400, str(e)) from None
        if self.controller is None or "variant" in selector:
            return self.index[chosen] if chosen else len(self.names) - 1
        return self.controller.choose(n, self.index[chosen] if chosen else None)

    async def _read_body(self, scope: dict, receive: Callable) -> tuple[bytes, int | None]:
        limit = self.cfg.max_body_bytes
        header_length = encoding = None
        for k, v in scope["headers"]:
            if k == b"content-length" and v.isdigit() and int(v) > limit:
                raise too_large(int(v), limit)
            if k == b"inference-header-content-length":
                if not v.isdigit():
                    raise HTTPError(400, f"Inference-Header-Content-Length must be a byte count, got {v.decode(errors='replace')!r}")
                header_length = int(v)
            elif k == b"content-encoding":
                encoding = v.decode("latin-1").strip().lower()
        chunks, size, more = [], 0, True
        while more:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                raise HTTPError(400, "the client disconnected before sending the whole body")
            chunk = msg.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise too_large(size, limit)
            chunks.append(chunk)
            more = msg.get("more_body", False)
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return decode_body(body, encoding, limit), header_length


def _method_not_allowed(method: str, allowed: str) -> HTTPError:
    return HTTPError(405, f"method {method} is not allowed here; use {allowed}", {b"allow": allowed.encode()})


async def _respond(send: Callable, status: int, body: bytes, ctype: bytes,
                   headers: dict[bytes, bytes] | None = None) -> None:
    hdrs = [(b"content-type", ctype), (b"content-length", str(len(body)).encode())]
    if headers:
        hdrs.extend(headers.items())
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": body})


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("slimkit")
    except Exception:
        return "unknown"
