"""The HTTP server: real uvicorn servers on 127.0.0.1, real clients (tritonclient.http, http.client)."""

from __future__ import annotations

import gzip
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

tritonclient_http = pytest.importorskip("tritonclient.http")
pytest.importorskip("uvicorn")

from slimkit import runtime  # noqa: E402
from slimkit.runtime.server import serve  # noqa: E402

MODEL = "bundle"  # tiny_bundle's directory name
INFER = f"/v2/models/{MODEL}/infer"


@pytest.fixture(scope="module")
def engine(tiny_bundle):
    return runtime.load(tiny_bundle, threads=1)


@pytest.fixture(scope="module")
def server(tiny_bundle):
    with serve(tiny_bundle, port=0, block=False, log_level="warning", max_body_bytes=64 << 10) as srv:
        yield srv


@pytest.fixture()
def client(server):
    c = tritonclient_http.InferenceServerClient(f"127.0.0.1:{server.port}")
    yield c
    c.close()


def _x(batch=2, seed=0):
    return np.random.default_rng(seed).standard_normal((batch, 16)).astype(np.float32)


def _request(port, method, path, body=b"", headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body, headers or {})
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


def _json_body(x, **params):
    req = {"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]}
    if params:
        req["parameters"] = params
    return json.dumps(req).encode()


def _assert_ready(port):
    status, _, body = _request(port, "GET", "/v2/health/ready")
    assert status == 200 and json.loads(body) == {"ready": True}


# -- protocol with the unmodified Triton client ---------------------------------------------------------


def test_health_and_metadata_with_tritonclient(client):
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(MODEL)
    meta = client.get_model_metadata(MODEL)
    assert meta["name"] == MODEL
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 16]}]
    assert meta["outputs"] == [{"name": "output", "datatype": "FP32", "shape": [-1, 4]}]
    assert meta["parameters"]["variants"] == ["w8", "w16", "w32"]
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    assert not client.is_model_ready("other")


@pytest.mark.parametrize("binary_in, binary_out", [(True, True), (False, False), (True, False), (False, True)])
@pytest.mark.parametrize("params, variant", [({}, "w32"), ({"budget": 0.5}, "w16"), ({"budget": 0.3}, "w8"),
                                             ({"variant": "w8"}, "w8"), ({"budget": 1}, "w32")])
def test_tritonclient_outputs_equal_the_engine(client, engine, binary_in, binary_out, params, variant):
    x = _x(3, seed=len(params))
    inp = tritonclient_http.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary_in)
    out = tritonclient_http.InferRequestedOutput("output", binary_data=binary_out)
    res = client.infer(MODEL, [inp], outputs=[out], parameters=params or None, request_id="r1")
    np.testing.assert_array_equal(res.as_numpy("output"), engine.run(x, variant=variant))
    resp = res.get_response()
    assert resp["parameters"]["variant"] == variant and resp["id"] == "r1"
    assert ("binary_data_size" in resp["outputs"][0].get("parameters", {})) == binary_out


def test_tritonclient_defaults_and_compression(client, engine):
    x = _x(1, seed=5)
    inp = tritonclient_http.InferInput("input", [1, 16], "FP32")
    inp.set_data_from_numpy(x)  # defaults: binary input, no outputs listed -> binary_data_output
    np.testing.assert_array_equal(client.infer(MODEL, [inp]).as_numpy("output"), engine.run(x))
    for algo in ("gzip", "deflate"):
        res = client.infer(MODEL, [inp], request_compression_algorithm=algo, parameters={"budget": 0.5})
        np.testing.assert_array_equal(res.as_numpy("output"), engine.run(x, budget=0.5))


def test_latency_ms_selector_and_errors_reach_the_client(client, engine):
    x = _x(1)
    inp = tritonclient_http.InferInput("input", [1, 16], "FP32")
    inp.set_data_from_numpy(x)
    res = client.infer(MODEL, [inp], parameters={"latency_ms": 1000.0})
    assert res.get_response()["parameters"]["variant"] == engine.select(latency_ms=1000.0).name
    with pytest.raises(tritonclient_http.InferenceServerException) as e:
        client.infer(MODEL, [inp], parameters={"variant": "w64"})
    assert e.value.status() == "400" and "no variant named 'w64'" in e.value.message()
    assert "['w8', 'w16', 'w32']" in e.value.message()


# -- bad requests: the right 4xx with a message, and the server stays ready ----------------------------

_X1 = _x(1)
_BIN_HEADER = json.dumps({"inputs": [{"name": "input", "shape": [1, 16], "datatype": "FP32",
                                      "parameters": {"binary_data_size": 64}}]}).encode()
_NAN = _X1.copy()
_NAN[0, 3] = np.nan


def _raw_body(data: str) -> bytes:
    return ('{"inputs": [{"name": "input", "shape": [1, 16], "datatype": "FP32", "data": ' + data + "}]}").encode()


def _bin(header, raw):
    return header + raw, {"Inference-Header-Content-Length": str(len(header))}


BAD = {
    "malformed json": (INFER, b'{"inputs": [', {}, 400, "not valid JSON"),
    "json not an object": (INFER, b"[1, 2]", {}, 400, "must be a JSON object"),
    "wrong shape": (INFER, _json_body(_x(1)).replace(b"[1, 16]", b"[1, 15]"), {}, 400, "shape [1, 15]"),
    "wrong rank": (INFER, _json_body(_x(1)).replace(b"[1, 16]", b"[16]"), {}, 400, "float32 of shape"),
    "wrong datatype": (INFER, _json_body(_x(1)).replace(b"FP32", b"FP64"), {}, 400, "takes FP32"),
    "too few elements": (INFER, _json_body(_x(1)).replace(b"[1, 16]", b"[2, 16]"), {}, 400, "needs 32"),
    "strings as data": (INFER, _raw_body('["a"' + ', "b"' * 15 + "]"), {}, 400, "FP32 numbers"),
    "nan in json": (INFER, _raw_body("[NaN" + ", 0.5" * 15 + "]"), {}, 400, "NaN"),
    "nan in binary": (INFER, *_bin(_BIN_HEADER, _NAN.tobytes()), 400, "NaN or infinite"),
    "binary size mismatch": (INFER, *_bin(_BIN_HEADER, _X1.tobytes()[:60]), 400, "needs 64 bytes"),
    "header length too big": (INFER, b"{}", {"Inference-Header-Content-Length": "99"}, 400, "byte length"),
    "wrong input name": (INFER, _json_body(_x(1)).replace(b'"input"', b'"x"'), {}, 400, "unknown input 'x'"),
    "two inputs": (INFER, json.dumps({"inputs": [{}, {}]}).encode(), {}, 400, "exactly one tensor"),
    "unknown output": (INFER, json.dumps({**json.loads(_json_body(_x(1))), "outputs": [{"name": "y"}]}).encode(),
                       {}, 400, "unknown output 'y'"),
    "unknown variant": (INFER, _json_body(_x(1), variant="w7"), {}, 400, "no variant named 'w7'"),
    "budget too large": (INFER, _json_body(_x(1), budget=1.5), {}, 400, "budget must be in (0, 1]"),
    "budget not a number": (INFER, _json_body(_x(1), budget="half"), {}, 400, "budget must be a number"),
    "budget below every variant": (INFER, _json_body(_x(1), budget=0.1), {}, 400, "no variant fits budget 0.1"),
    "two selectors": (INFER, _json_body(_x(1), budget=0.5, variant="w8"), {}, 400, "at most one of"),
    "oversized body": (INFER, b"x" * (65 << 10), {}, 413, "exceeds the limit of 65536 bytes"),
    "gzip bomb": (INFER, gzip.compress(b" " * (1 << 20)), {"Content-Encoding": "gzip"}, 413, "after decompression"),
    "bad gzip": (INFER, b"not gzip", {"Content-Encoding": "gzip"}, 400, "could not be decompressed"),
    "unknown encoding": (INFER, b"{}", {"Content-Encoding": "br"}, 415, "not supported"),
    "unknown model": ("/v2/models/nope/infer", _json_body(_x(1)), {}, 404, "unknown model"),
    "unknown path": ("/v3/anything", b"", {}, 404, "no endpoint"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_requests_get_a_4xx_with_a_message(server, case):
    path, body, headers, code, message = BAD[case]
    method = "POST" if path != "/v3/anything" else "GET"
    status, _, resp = _request(server.port, method, path, body, headers)
    assert status == code, resp
    assert message in json.loads(resp)["error"]
    _assert_ready(server.port)


def test_wrong_method_gets_405_and_errors_are_counted(server):
    status, headers, body = _request(server.port, "GET", INFER)
    assert status == 405 and headers["allow"] == "POST" and "use POST" in json.loads(body)["error"]
    metrics = _request(server.port, "GET", "/metrics")[2].decode()
    assert 'slimkit_request_errors_total{model="bundle",code="405"}' in metrics


def test_shared_metrics_merge_processes_and_keep_exited_ones_counts(tmp_path):
    from slimkit.runtime.metrics import ServerMetrics
    from slimkit.runtime.metrics_share import SharedMetrics

    class Ctrl:  # only what ServerMetrics reads of a controller
        slo_ms = 50.0

        def __init__(self, scale):
            self.scale = scale

        def state(self):
            return {"scale": self.scale}

    def worker(pid, n, scale):
        m = ServerMetrics("m", ["a", "b"], [0.9, 0.95], Ctrl(scale))
        for k in range(n):
            m.infer(k % 2, 1, 0.001, 0.002)
        m.in_flight = 1
        share = SharedMetrics(tmp_path, m)
        share.pid = pid  # pretend to be that worker
        return share

    me = worker(os.getpid(), 3, 1.0)
    sibling = worker(os.getppid(), 4, 0.5)  # a live process
    gone = worker(2**22 + 4321, 5, 0.25)    # no such pid: an exited worker
    sibling.write()
    gone.write()
    text = me.render().decode()
    assert _metric_sum(text, "slimkit_infer_requests_total") == 12  # counters: every worker, exited too
    assert 'slimkit_infer_requests_total{model="m",variant="a"} 7' in text  # 2 + 2 + 3
    assert _metric_sum(text, "slimkit_request_latency_seconds_count") == 12
    assert "slimkit_in_flight_requests 2" in text  # live workers only
    assert f'slimkit_slo_controller{{quantity="scale",worker="{os.getppid()}"}} 0.5' in text
    assert f'worker="{2**22 + 4321}"' not in text and text.count('quantity="scale"') == 2
    assert "slimkit_slo_seconds 0.05" in text
    (tmp_path / "junk.json").write_text("{")  # not a worker's file: ignored
    assert me.render().decode() == text


def test_metrics_count_requests_per_variant(server):
    def count(text, variant):
        key = f'slimkit_infer_requests_total{{model="bundle",variant="{variant}"}} '
        lines = [ln for ln in text.splitlines() if ln.startswith(key)]
        return float(lines[0].split()[-1]) if lines else 0.0

    status, headers, before = _request(server.port, "GET", "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
    for _ in range(7):
        assert _request(server.port, "POST", INFER, _json_body(_x(1), variant="w16"))[0] == 200
    after = _request(server.port, "GET", "/metrics")[2].decode()
    assert count(after, "w16") - count(before.decode(), "w16") == 7
    assert 'slimkit_request_latency_seconds_bucket{model="bundle",variant="w16",le="+Inf"}' in after
    assert "# TYPE slimkit_inference_seconds histogram" in after


# -- token ----------------------------------------------------------------------------------------------


def test_bearer_token(tiny_bundle, engine):
    with serve(tiny_bundle, port=0, block=False, log_level="warning", token="s3cret") as srv:
        body = _json_body(_x(1))
        status, headers, resp = _request(srv.port, "POST", INFER, body)
        assert status == 401 and "Authorization: Bearer" in json.loads(resp)["error"]
        assert headers["www-authenticate"] == "Bearer"
        status, _, resp = _request(srv.port, "POST", INFER, body, {"Authorization": "Bearer wrong"})
        assert status == 401 and "wrong bearer token" in json.loads(resp)["error"]
        assert _request(srv.port, "GET", "/metrics")[0] == 401
        assert _request(srv.port, "GET", f"/v2/models/{MODEL}")[0] == 401
        _assert_ready(srv.port)  # health stays open for probes
        c = tritonclient_http.InferenceServerClient(f"127.0.0.1:{srv.port}")
        inp = tritonclient_http.InferInput("input", [1, 16], "FP32")
        inp.set_data_from_numpy(_x(1))
        res = c.infer(MODEL, [inp], headers={"Authorization": "Bearer s3cret"})
        np.testing.assert_array_equal(res.as_numpy("output"), engine.run(_x(1)))
        c.close()


# -- load ------------------------------------------------------------------------------------------------


def test_load_thousands_of_requests_from_threads_match_the_engine(server, engine):
    threads, per_thread = 8, 300
    selectors = [{}, {"budget": 0.5}, {"variant": "w8"}, {"budget": 0.3}]
    errors, mismatches, done = [], [], []

    def worker(k):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        rng = np.random.default_rng(k)
        for j in range(per_thread):
            x = rng.standard_normal((1 + j % 3, 16)).astype(np.float32)
            sel = selectors[j % len(selectors)]
            if j % 2:  # binary in and out
                header = json.dumps({"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32",
                                                 "parameters": {"binary_data_size": x.nbytes}}],
                                     "parameters": {**sel, "binary_data_output": True}}).encode()
                conn.request("POST", INFER, header + x.tobytes(),
                             {"Inference-Header-Content-Length": str(len(header))})
            else:
                conn.request("POST", INFER, _json_body(x, **sel))
            r = conn.getresponse()
            body = r.read()
            if r.status != 200:
                errors.append((r.status, body[:200]))
                continue
            hl = r.getheader("Inference-Header-Content-Length")
            meta = json.loads(body[:int(hl)] if hl else body)
            y = (np.frombuffer(body[int(hl):], np.float32) if hl else np.asarray(meta["outputs"][0]["data"],
                                                                                  np.float32)).reshape(len(x), 4)
            want = engine.run(x, **sel)
            if meta["parameters"]["variant"] != engine.last or not np.array_equal(y, want):
                mismatches.append((k, j))
            done.append(1)
        conn.close()

    pool = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(120)
    assert errors == [] and mismatches == []
    assert len(done) == threads * per_thread
    _assert_ready(server.port)


# -- the command, SIGTERM ----------------------------------------------------------------------------------


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_cli(bundle, *extra):
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "slimkit.export.cli", "serve", str(bundle), "--port", str(port),
                             "--log-level", "warning", *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if _request(port, "GET", "/v2/health/ready")[0] == 200:
                return proc, port
        except OSError:
            time.sleep(0.1)
        if proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError(f"slimkit serve did not start: {proc.communicate()[0].decode()}")


def test_sigterm_lets_the_in_flight_request_finish(tiny_bundle, engine):
    proc, port = _start_cli(tiny_bundle, "--name", "tiny")
    try:
        maps = Path(f"/proc/{proc.pid}/maps")
        if maps.exists():  # `slimkit serve` must not load torch
            assert "libtorch" not in maps.read_text()
        x = _x(2)
        body = _json_body(x, budget=0.5)
        sock = socket.create_connection(("127.0.0.1", port))
        head = (f"POST /v2/models/tiny/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        sock.sendall(head + body[:20])  # the request is in flight: headers read, body still coming
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        with pytest.raises(OSError):  # no new connections once shutdown began
            _request(port, "GET", "/v2/health/live")
        sock.sendall(body[20:])
        resp = b""
        while chunk := sock.recv(65536):
            resp += chunk
        sock.close()
        status_line, _, rest = resp.partition(b"\r\n")
        assert b" 200 " in status_line
        payload = json.loads(rest.split(b"\r\n\r\n", 1)[1])
        assert payload["parameters"]["variant"] == "w16"
        np.testing.assert_array_equal(np.asarray(payload["outputs"][0]["data"], np.float32).reshape(2, 4),
                                      engine.run(x, budget=0.5))
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _metric_sum(text: str, name: str) -> float:
    return sum(float(ln.split()[-1]) for ln in text.splitlines() if ln.startswith(name + "{"))


def test_cli_workers_share_one_metrics_view_and_bad_arguments(tiny_bundle, tmp_path):
    shared = lambda: set(Path(tempfile.gettempdir()).glob("slimkit-metrics-*"))  # noqa: E731
    before = shared()
    proc, port = _start_cli(tiny_bundle, "--workers", "2", "--slo-ms", "50")
    try:
        for _ in range(20):  # a new connection each: the kernel spreads them over the two processes
            status, _, body = _request(port, "POST", INFER, _json_body(_x(1)))
            assert status == 200 and json.loads(body)["parameters"]["variant"] in ("w8", "w16", "w32")
        time.sleep(1.5)  # every worker has written a snapshot since
        for _ in range(6):  # whichever process answers, the scrape covers both
            status, _, body = _request(port, "GET", "/metrics")
            text = body.decode()
            assert status == 200
            assert _metric_sum(text, "slimkit_infer_requests_total") == 20
            assert _metric_sum(text, "slimkit_slo_requests_total") == 20
            assert _metric_sum(text, "slimkit_request_latency_seconds_count") == 20
            workers = {ln.split('worker="')[1].split('"')[0] for ln in text.splitlines()
                       if ln.startswith('slimkit_slo_controller{quantity="scale"')}
            assert len(workers) == 2
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert shared() == before  # the snapshot directory is removed on exit
    bad = subprocess.run([sys.executable, "-m", "slimkit.export.cli", "serve", str(tmp_path / "missing")],
                         capture_output=True, text=True, timeout=60, env={**os.environ})
    assert bad.returncode == 2 and "does not exist" in bad.stderr
