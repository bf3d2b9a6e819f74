"""The deployment stage of the quantize rows (issue 7's targets), on the INT8 bundle: every variant and
twin in a Triton repository whose configs parse into Triton's ``ModelConfig`` and whose models match the
engine under onnxruntime; every variant answering through a Ray Serve deployment (2 replicas, local Ray,
2 CPUs) with the engine's outputs; HTTP throughput of Ray Serve against one ``slimkit serve`` process
under the same closed-loop load.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import numpy as np

from bench.common import raw_session
from bench.core import Measurement
from bench.serve.load import Server, free_port
from slimkit import export, runtime

__all__ = ["deployment_checks"]


def deployment_checks(bundle: Path, out: Path, x: np.ndarray, *, http_seconds: float,
                      scratch: Path) -> tuple[dict, list[Measurement]]:
    """Triton repository + Ray Serve checks of every variant, and HTTP throughput Ray vs slimkit serve;
    the per-request latencies of both servers as measurements."""
    ray, ms = _ray_check(bundle, x, http_seconds, scratch)
    return {"triton": _triton_check(bundle, out / "triton", x), **ray}, ms


def _engines(bundle: Path) -> dict[str, runtime.Engine]:
    return {p: runtime.load(bundle, threads=1, precision=p) for p in runtime.read_manifest(bundle).precisions}


def _triton_check(bundle: Path, repo: Path, x: np.ndarray) -> list[dict]:
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    export.to_triton(bundle, repo, overwrite=True)
    engines, m = _engines(bundle), runtime.read_manifest(bundle)
    rows = []
    for v in m.variants + m.twins:
        cfg = text_format.Parse((repo / v.name / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
        sess = raw_session(repo / v.name / "1" / "model.onnx", 1)
        got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
        want = engines[v.precision].run(x, variant=v.name)
        rows.append({"model": v.name, "platform": cfg.platform, "max_batch_size": cfg.max_batch_size,
                     "schema_ok": cfg.name == v.name, "max_abs_diff_vs_engine": float(np.abs(got - want).max())})
    return rows


def _ray_check(bundle: Path, x: np.ndarray, seconds: float, scratch: Path) -> tuple[dict, list[Measurement]]:
    import ray
    from ray import serve

    from slimkit.runtime import ray_serve

    engines = _engines(bundle)
    ray.init(num_cpus=2, include_dashboard=False, address="local", log_to_driver=False, configure_logging=False)
    ray_port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": ray_port})
    answers, load, samples = [], {}, {}
    try:
        for precision, eng in engines.items():  # one app at a time: two replicas take both CPUs
            h = ray_serve.run(bundle, num_replicas=2, num_cpus=1, threads=1, precision=precision,
                              app_name=f"slimkit-{precision}", model_name=f"demo-{precision}")
            for name in eng.names:
                got = h.infer.remote(x, variant=name).result()
                answers.append({"variant": name, "served_by": got["variant"],
                                "equal_to_engine": bool(np.array_equal(got["output"], eng.run(x, variant=name)))})
            if precision == "fp32":
                load["ray_serve_2_replicas"], samples["ray_serve_2_replicas"] = _http_load(
                    f"http://127.0.0.1:{ray_port}/v2/models/demo-fp32/infer", x[:1], seconds=seconds)
            serve.delete(f"slimkit-{precision}")
    finally:
        serve.shutdown()
        ray.shutdown()
    port = free_port()
    srv = Server([sys.executable, "-m", "slimkit.export.cli", "serve", str(bundle), "--port", str(port),
                  "--name", "demo", "--log-level", "warning"], port, scratch / f"slimkit-{port}.log")
    try:
        load["slimkit_serve_1_process"], samples["slimkit_serve_1_process"] = _http_load(
            f"{srv.url}/v2/models/demo/infer", x[:1], seconds=seconds)
    finally:
        srv.stop()
    ms = [Measurement(name, "http-b1-budget0.5", lat, baseline=None if name.startswith("slimkit") else
                      "slimkit_serve_1_process", extra={"what": "seconds per request, 4 closed-loop client threads",
                                                        **load[name]})
          for name, lat in samples.items()]
    return {"ray_answers": answers, "http_load": load}, ms


def _http_load(url: str, x: np.ndarray, *, clients: int = 4, seconds: float = 10.0) -> tuple[dict, list[float]]:
    """Closed-loop load: ``clients`` threads, each with one keep-alive connection, for ``seconds``; the
    figures and every request's latency."""
    import http.client
    from urllib.parse import urlparse

    u = urlparse(url)
    body = json.dumps({"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32",
                                   "data": x.ravel().tolist()}], "parameters": {"budget": 0.5}}).encode()
    lat: list[float] = []
    errors = [0]
    stop = time.perf_counter() + seconds

    def client() -> None:
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        while time.perf_counter() < stop:
            t = time.perf_counter()
            conn.request("POST", u.path, body, {"Content-Type": "application/json"})
            r = conn.getresponse()
            r.read()
            if r.status == 200:
                lat.append(time.perf_counter() - t)
            else:
                errors[0] += 1
        conn.close()

    for _ in range(20):  # warm-up
        client_conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        client_conn.request("POST", u.path, body, {"Content-Type": "application/json"})
        client_conn.getresponse().read()
        client_conn.close()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return {"clients": clients, "seconds": wall, "requests": len(lat), "errors": errors[0],
            "throughput_rps": len(lat) / wall, "p50_ms": float(np.median(lat) * 1e3),
            "p95_ms": float(np.percentile(lat, 95) * 1e3)}, lat
