"""Scale-out with Ray Serve: replicas that each hold every variant of a bundle and pick one per request.

Needs the ``ray`` extra (``pip install "slimkit[ray]"``). It lives in the runtime because it only
serves a bundle: no torch, no export code, so it deploys on the same boxes as ``slimkit serve``.

Each replica loads the bundle once (an :class:`~slimkit.runtime.Engine`, all variants' sessions
ready), so switching variants costs nothing; Ray Serve spreads requests over replicas. Two ways in:

* Python: ``handle.infer.remote(x, budget=0.5).result()`` returns ``{"output": array, "variant": name}``.
* HTTP: the KServe v2 protocol that ``slimkit serve`` speaks (:mod:`slimkit.runtime.protocol`):
  ``POST {route_prefix}/infer`` with ``parameters.budget`` / ``variant`` / ``latency_ms``; the response's
  ``parameters.variant`` names the variant that served it. ``GET {route_prefix}`` gives the metadata.

Example:
    >>> from slimkit.runtime import ray_serve
    >>> handle = ray_serve.run("out/bundle", num_replicas=2)             # doctest: +SKIP
    >>> handle.infer.remote(x, budget=0.5).result()["variant"]           # doctest: +SKIP
    'w0.50'
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .engine import load
from .errors import ConfigError, SlimkitError, require
from .manifest import read_manifest

__all__ = ["BundleServer", "deployment", "run"]


class BundleServer:
    """The replica: one engine over every variant of a bundle (wrapped by Ray Serve in :func:`deployment`).

    Args:
        bundle_dir: the bundle (verified on load).
        backend: ``"onnxruntime"``, ``"torch"`` or ``"tensorrt"``.
        precision: which variants budget selection chooses among (``"fp32"``, or ``"int8"`` twins).
        model_name: the name in HTTP responses (default: the bundle directory's name).
        options: backend options, e.g. ``threads=1``.
    """

    def __init__(self, bundle_dir: str, *, backend: str = "onnxruntime", precision: str = "fp32",
                 model_name: str | None = None, **options: Any):
        self.engine = load(bundle_dir, backend, precision=precision, **options)
        self.model_name = model_name or Path(bundle_dir).resolve().name
        self.output_name = self.engine.manifest.outputs[0].name

    def infer(self, x: np.ndarray, **selector: Any) -> dict[str, Any]:
        """Run ``x`` on the variant chosen by ``budget=`` / ``variant=`` / ``latency_ms=`` (as ``Engine.run``)."""
        y = self.engine.run(x, **selector)
        return {"output": y, "variant": self.engine.last}

    def variants(self) -> list[str]:
        """The bundle's variant names, cheapest first."""
        return self.engine.names

    async def __call__(self, request: Any) -> Any:
        """HTTP entry (a Starlette request): KServe v2 infer on ``POST .../infer``, metadata on ``GET``."""
        from starlette.responses import JSONResponse, Response

        from .protocol import HTTPError, decode_infer_request, encode_infer_response, model_metadata

        if request.method == "GET":
            return JSONResponse(model_metadata(self.model_name, self.engine.manifest))
        if request.method != "POST" or not request.url.path.rstrip("/").endswith("/infer"):
            return JSONResponse({"error": f"use POST {request.url.path.rstrip('/')}/infer"}, status_code=404)
        try:
            length = request.headers.get("inference-header-content-length")
            req = decode_infer_request(await request.body(), int(length) if length else None,
                                       self.engine.inputs)
            y = self.engine.run(req.x, **req.selector)
            body, header_len = encode_infer_response(self.model_name, req, {self.output_name: y},
                                                     {"variant": self.engine.last})
        except HTTPError as e:
            return JSONResponse({"error": str(e)}, status_code=e.status)
        except (SlimkitError, ValueError) as e:  # a budget nothing fits, a bad input shape ...
            return JSONResponse({"error": str(e)}, status_code=400)
        headers = {"inference-header-content-length": str(header_len)} if header_len is not None else {}
        return Response(body, media_type="application/octet-stream" if header_len else "application/json",
                        headers=headers)


def deployment(bundle_dir: str | os.PathLike, *, num_replicas: int = 2, num_cpus: float = 1.0,
               max_ongoing_requests: int = 16, backend: str = "onnxruntime", precision: str = "fp32",
               model_name: str | None = None, **options: Any) -> Any:
    """A bound Ray Serve application serving ``bundle_dir`` (pass it to ``serve.run``).

    Args:
        bundle_dir: the bundle; every replica must see this path (shared disk, or the same image).
        num_replicas: replicas, each holding all variants.
        num_cpus: CPUs Ray reserves per replica (use ``threads=`` to match the intra-op threads).
        max_ongoing_requests: concurrent requests per replica before Ray queues them.
        backend, precision, model_name, options: as :class:`BundleServer`.

    Raises:
        MissingExtraError: Ray Serve is not installed. ConfigError: bad arguments or bundle.
    """
    serve = require("ray.serve", "ray")
    if isinstance(num_replicas, bool) or not isinstance(num_replicas, int) or num_replicas < 1:
        raise ConfigError(f"num_replicas must be a positive int, got {num_replicas!r}")
    path = str(Path(bundle_dir).resolve())
    read_manifest(path).with_precision(precision)  # fail here, not inside a replica
    cls = serve.deployment(BundleServer, name="slimkit-bundle", num_replicas=num_replicas,
                           ray_actor_options={"num_cpus": num_cpus},
                           max_ongoing_requests=max_ongoing_requests)
    return cls.bind(path, backend=backend, precision=precision, model_name=model_name, **options)


def run(bundle_dir: str | os.PathLike, *, route_prefix: str | None = None, app_name: str = "slimkit",
        **kwargs: Any) -> Any:
    """Deploy :func:`deployment` on the running (or a new local) Ray cluster; returns its handle.

    HTTP is served under ``route_prefix`` (default ``/v2/models/<model name>``) on Ray Serve's proxy
    (``serve.start(http_options={"host": ..., "port": ...})`` first to choose where).
    """
    serve = require("ray.serve", "ray")
    name = kwargs.get("model_name") or Path(bundle_dir).resolve().name
    return serve.run(deployment(bundle_dir, **kwargs), name=app_name,
                     route_prefix=route_prefix or f"/v2/models/{name}", blocking=False)
