"""Ray Serve scale-out on a local Ray instance (loopback, two CPUs): every variant answers through the
deployment, by Python handle and by KServe v2 HTTP, with the same outputs as the Engine."""

from __future__ import annotations

import json
import os
import socket
import urllib.error
import urllib.request

import numpy as np
import pytest

from slimkit import runtime
from slimkit.runtime.errors import ConfigError

ray = pytest.importorskip("ray", reason='Ray Serve is not installed: pip install "slimkit[ray]"')
serve = pytest.importorskip("ray.serve", reason='Ray Serve is not installed: pip install "slimkit[ray]"')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# A busy 2-core CI box can take longer than Ray Serve's default 5 s to get its HTTP proxy ready, after
# which Ray kills it ("killed by ray.kill"); the workers inherit these from the driver's environment.
_PATIENT = {"RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "60", "RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S": "60"}


@pytest.fixture(scope="module")
def cluster():
    saved = {k: os.environ.get(k) for k in _PATIENT}
    os.environ.update(_PATIENT)
    ray.init(num_cpus=2, include_dashboard=False, address="local", _node_ip_address="127.0.0.1",
             log_to_driver=False, configure_logging=False)
    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    yield port
    serve.shutdown()
    ray.shutdown()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def handle(cluster, tiny_bundle):
    from slimkit.runtime import ray_serve

    return ray_serve.run(tiny_bundle, num_replicas=2, num_cpus=0.5, threads=1, model_name="tiny")


def test_every_variant_answers_like_the_engine(handle, tiny_bundle):
    eng = runtime.load(tiny_bundle, threads=1)
    x = np.random.default_rng(0).standard_normal((4, 16)).astype(np.float32)
    for name in eng.names:
        got = handle.infer.remote(x, variant=name).result()
        assert got["variant"] == name
        np.testing.assert_array_equal(got["output"], eng.run(x, variant=name))
    for budget in (0.25, 0.5, 0.75, 1.0):
        got = handle.infer.remote(x, budget=budget).result()
        assert got["variant"] == eng.select(budget=budget).name
        np.testing.assert_array_equal(got["output"], eng.run(x, budget=budget))
    # many concurrent requests spread over both replicas give the same answers
    answers = [handle.infer.remote(x, budget=0.5) for _ in range(20)]
    for a in answers:
        np.testing.assert_array_equal(a.result()["output"], eng.run(x, budget=0.5))


def test_http_speaks_kserve_v2(handle, cluster, tiny_bundle):
    eng = runtime.load(tiny_bundle, threads=1)
    x = np.random.default_rng(1).standard_normal((2, 16)).astype(np.float32)
    url = f"http://127.0.0.1:{cluster}/v2/models/tiny"

    def post(body: dict) -> tuple[int, dict]:
        req = urllib.request.Request(url + "/infer", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    tensor = {"name": "input", "shape": [2, 16], "datatype": "FP32", "data": x.ravel().tolist()}
    status, resp = post({"inputs": [tensor], "parameters": {"budget": 0.5}})
    assert status == 200 and resp["parameters"]["variant"] == "w16"
    out = np.array(resp["outputs"][0]["data"], np.float32).reshape(resp["outputs"][0]["shape"])
    np.testing.assert_allclose(out, eng.run(x, budget=0.5), rtol=1e-6)
    status, resp = post({"inputs": [tensor], "parameters": {"budget": 0.1}})
    assert status == 400 and "no variant fits budget 0.1" in resp["error"]
    with urllib.request.urlopen(url, timeout=60) as r:
        assert json.loads(r.read())["parameters"]["variants"] == ["w8", "w16", "w32"]


def test_bad_arguments_fail_before_deploying(tiny_bundle):
    from slimkit.runtime import ray_serve

    with pytest.raises(ConfigError, match="num_replicas"):
        ray_serve.deployment(tiny_bundle, num_replicas=0)
    with pytest.raises(ConfigError, match="no 'int8' variants"):
        ray_serve.deployment(tiny_bundle, precision="int8")
