"""Serving benchmark: slimkit's HTTP server against KServe's Python model server, and SLO control.

    .venv/bin/python bench/serve.py                 # -> bench/serve_results.json, bench/SERVE_RESULTS.md
    .venv/bin/python bench/serve.py --quick         # smoke -> bench/out/serve-quick.{json,md}
    .venv/bin/python bench/serve.py --render bench/serve_results.json   # rewrite the markdown only

1. **Throughput and latency at batch 1** (closed loop; wrk when installed, else Python client
   processes) for several concurrencies, against KServe (``kserve`` in bench/.venv-kserve, a custom
   ``kserve.Model`` wrapping onnxruntime with the same session options) on the same ONNX file (the
   bundle's largest variant), same JSON request, rounds interleaved (slimkit, KServe, slimkit, ...).
2. **Overhead** over the in-process ``Engine.run`` at p50 (concurrency 1).
3. **SLO control** under an open-loop bursty trace (Poisson, calm and burst phases, rates set from the
   measured capacity of the largest and smallest variants on this machine): each fixed variant, then
   the SLO controller, then (ablation) the controller with every variant a candidate
   (``--slo-min-gain 0``), replay the same arrivals. SLO attainment (client-observed latency <= SLO) and
   effective accuracy (mean over all requests of the serving variant's manifest accuracy for answers
   within the SLO, 0 otherwise).

Client, servers and everything else on the machine share its cores; results say how many.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _serve_kserve as ks  # noqa: E402
from _bench import atomic_write  # noqa: E402
from _serve_load import bursty_trace, closed_loop, have_wrk, open_loop  # noqa: E402
from _serve_report import render  # noqa: E402

HERE = Path(__file__).resolve().parent
MODEL = "m"


def _log(msg: str) -> None:
    print(f"[serve-bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server:
    """A server subprocess, ready when /v2/health/ready answers 200; stopped with SIGTERM."""

    def __init__(self, cmd: list[str], port: int, log: Path):
        self.port, self.url = port, f"http://127.0.0.1:{port}"
        self.log = open(log, "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        import http.client

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early: {' '.join(cmd)}; see {log}")
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                c.request("GET", "/v2/health/ready")
                if c.getresponse().status == 200:
                    c.close()
                    return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server did not get ready: {' '.join(cmd)}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def _slimkit(bundle: Path, port: int, scratch: Path, *extra: str) -> _Server:
    cmd = [sys.executable, "-m", "slimkit.export.cli", "serve", str(bundle), "--name", MODEL, "--port", str(port),
           "--log-level", "warning", *extra]
    return _Server(cmd, port, scratch / f"slimkit-{port}.log")


def _kserve(onnx: Path, port: int, scratch: Path) -> _Server:
    return _Server(ks.command(onnx, port, MODEL), port, scratch / f"kserve-{port}.log")


def _json_request(x: np.ndarray) -> bytes:
    return json.dumps({"id": "b", "inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32",
                                              "data": x.ravel().tolist()}]}).encode()


def _binary_request(x: np.ndarray, **params) -> tuple[bytes, dict[str, str]]:
    header = json.dumps({"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32",
                                     "parameters": {"binary_data_size": x.nbytes}}],
                         "parameters": {**params, "binary_data_output": True}}).encode()
    return header + x.tobytes(), {"Inference-Header-Content-Length": str(len(header))}


# -- 1 + 2: throughput, latency, overhead ----------------------------------------------------------------
def throughput(bundle: Path, onnx: Path, x1: np.ndarray, concurrencies, seconds, rounds, scratch) -> dict:
    body, headers = _json_request(x1), {"Content-Type": "application/json"}
    path = f"/v2/models/{MODEL}/infer"
    systems = {"slimkit": (), "kserve": None, "slimkit_pool_only": ("--inline-us", "0")}  # ablation: no inline runs
    rows: dict[str, dict[int, list]] = {s: {c: [] for c in concurrencies} for s in systems}
    for r in range(rounds):
        for system, extra in systems.items():
            port = _free_port()
            srv = _kserve(onnx, port, scratch) if extra is None else _slimkit(bundle, port, scratch, *extra)
            try:
                closed_loop(srv.url + path, body, headers, 4, 1.0, scratch)  # warm-up
                for c in concurrencies:
                    res = closed_loop(srv.url + path, body, headers, c, seconds, scratch)
                    rows[system][c].append(res)
                    _log(f"round {r + 1} {system:17s} c={c:<3d} {res['rps']:8.0f} req/s  p50 {res['p50_ms']:.3f} ms  "
                         f"p99 {res['p99_ms']:.3f} ms  errors {res['errors']}")
            finally:
                srv.stop()
    # per system and concurrency: the round with the median throughput
    table = {s: [sorted(v, key=lambda d: d["rps"])[len(v) // 2] for v in per.values()] for s, per in rows.items()}
    return {"rows": table, "all_rounds": rows, "request": "JSON, batch 1, largest variant, no selector"}


def equal_p99(table: dict) -> list[dict]:
    """For each KServe point: slimkit's best throughput at a p99 no higher than KServe's there."""
    out = []
    for k in table["kserve"]:
        ours = [s for s in table["slimkit"] if s["p99_ms"] <= k["p99_ms"]]
        best = max(ours, key=lambda s: s["rps"]) if ours else None
        out.append({"kserve_concurrency": k["concurrency"], "kserve_rps": k["rps"], "kserve_p99_ms": k["p99_ms"],
                    "slimkit_rps": best["rps"] if best else None, "slimkit_p99_ms": best["p99_ms"] if best else None,
                    "slimkit_concurrency": best["concurrency"] if best else None,
                    "ratio": best["rps"] / k["rps"] if best else None})
    return out


def engine_p50(bundle: Path, x1: np.ndarray, repeats: int = 5000) -> dict:
    from slimkit import runtime

    eng = runtime.load(bundle, threads=1)
    for _ in range(200):
        eng.run(x1)
    t = np.empty(repeats)
    for i in range(repeats):
        t0 = time.perf_counter()
        eng.run(x1)
        t[i] = time.perf_counter() - t0
    return {"p50_ms": float(np.percentile(t, 50) * 1e3), "p99_ms": float(np.percentile(t, 99) * 1e3)}


# -- 3: SLO control under a bursty trace -----------------------------------------------------------------
def _score(res: list, slo_ms: float, acc: dict, names: list) -> dict:
    """Attainment, effective accuracy, latency percentiles and variant mix of one replay's results."""
    lat = np.asarray([q[0] for q in res]) * 1e3
    ok = np.asarray([q[1] == 200 for q in res])
    within = ok & (lat <= slo_ms)
    served = [q[2] if q[1] == 200 else None for q in res]
    eff = float(np.mean([acc[v] if w else 0.0 for v, w in zip(served, within)]))
    return {"attainment": float(within.mean()), "effective_accuracy": eff, "errors": int((~ok).sum()),
            "p50_ms": float(np.percentile(lat, 50)), "p95_ms": float(np.percentile(lat, 95)),
            "p99_ms": float(np.percentile(lat, 99)),
            "variant_mix": {n: served.count(n) / len(served) for n in names if served.count(n)}}


def _fmt(d: dict) -> str:
    return (f"attainment {d['attainment']:.4f}  effective accuracy {d['effective_accuracy']:.4f}  "
            f"p99 {d['p99_ms']:.1f} ms  mix {({k: round(v, 3) for k, v in d['variant_mix'].items()})}")


def slo_bench(bundle: Path, batch: int, slo_ms: float | None, cycles: int, scratch: Path, rounds: int = 2) -> dict:
    from slimkit.runtime import read_manifest

    m = read_manifest(bundle)
    names = m.names
    acc = {v.name: float(v.metrics.get("accuracy", float("nan"))) for v in m.variants}
    x = np.random.default_rng(1).standard_normal((batch, *m.inputs[0].shape[1:])).astype(np.float32)
    path = f"/v2/models/{MODEL}/infer"
    # capacity of the largest and smallest variants (closed loop, 4 connections) sets the trace's rates
    port = _free_port()
    srv = _slimkit(bundle, port, scratch)
    try:
        cap = {}
        for name in (names[-1], names[0]):
            body, headers = _binary_request(x, variant=name)
            closed_loop(srv.url + path, body, headers, 4, 1.0, scratch)
            cap[name] = closed_loop(srv.url + path, body, headers, 4, 3.0, scratch)
        one = closed_loop(srv.url + path, _binary_request(x, variant=names[-1])[0],
                          _binary_request(x, variant=names[-1])[1], 1, 2.0, scratch)
    finally:
        srv.stop()
    c_big, c_small = cap[names[-1]]["rps"], cap[names[0]]["rps"]
    if slo_ms is None:  # 10x the largest variant's unloaded p50, at least 20 ms
        slo_ms = max(20.0, float(round(10 * one["p50_ms"])))
    calm, burst = 0.4 * c_big, min(1.5 * c_big, 0.6 * c_small)
    arrivals = bursty_trace(calm, burst, calm_s=3.0, burst_s=1.5, cycles=cycles, seed=0)
    _log(f"SLO trace: batch {batch}, capacity {names[-1]} {c_big:.0f} req/s, {names[0]} {c_small:.0f} req/s; "
         f"calm {calm:.0f} req/s, bursts {burst:.0f} req/s; {len(arrivals)} requests over {arrivals[-1]:.1f} s; "
         f"SLO {slo_ms:g} ms")
    policies = [(f"fixed {n}", {"variant": n}, ()) for n in names] + [
        ("SLO controller", {}, ("--slo-ms", str(slo_ms))),
        # ablation: every variant a candidate, not only those on the accuracy frontier
        ("SLO controller, min-gain 0", {}, ("--slo-ms", str(slo_ms), "--slo-min-gain", "0"))]
    runs: dict[str, list] = {label: [] for label, _, _ in policies}
    server_views: dict[str, list] = {label: [] for label, _, _ in policies}
    for r in range(rounds):  # round order alternates (A..E, E..A) so machine drift hits every policy alike
        for label, params, extra in (policies if r % 2 == 0 else policies[::-1]):
            port = _free_port()
            srv = _slimkit(bundle, port, scratch, *extra)
            try:
                body, headers = _binary_request(x, **params)
                closed_loop(srv.url + path, body, headers, 2, 1.0, scratch)  # warm-up
                res = open_loop(srv.url + path, body, headers, arrivals)
                if extra:
                    server_views[label].append(_server_slo(srv.url))
            finally:
                srv.stop()
            runs[label].append(res)
            _log(f"round {r + 1} {label:16s} " + _fmt(_score(res, slo_ms, acc, names)))
    results = {}
    for label, per_round in runs.items():
        results[label] = _score([q for res in per_round for q in res], slo_ms, acc, names)
        results[label]["rounds"] = [_score(res, slo_ms, acc, names) for res in per_round]
        if server_views[label]:
            results[label]["server_side"] = server_views[label]
        _log(f"all rounds {label:16s} " + _fmt(results[label]))
    return {"batch": batch, "slo_ms": slo_ms, "capacity_rps": {names[-1]: c_big, names[0]: c_small},
            "unloaded_largest": one, "calm_rps": calm, "burst_rps": burst, "calm_s": 3.0, "burst_s": 1.5,
            "cycles": cycles, "requests": len(arrivals), "rounds": rounds, "accuracy": acc, "policies": results}


def _server_slo(url: str) -> dict:
    """The server's own view from /metrics: attainment and effective accuracy as it timed them."""
    import urllib.request

    text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    vals = {}
    for ln in text.splitlines():
        if ln.startswith(("slimkit_slo_requests_total", "slimkit_slo_accuracy_sum")):
            key, v = ln.rsplit(" ", 1)
            vals[key] = float(v)
    within = sum(v for k, v in vals.items() if 'within="true"' in k)
    total = sum(v for k, v in vals.items() if k.startswith("slimkit_slo_requests_total"))
    acc = sum(v for k, v in vals.items() if k.startswith("slimkit_slo_accuracy_sum"))
    return {"attainment": within / total if total else None, "effective_accuracy": acc / total if total else None}


def _bundle(arg: str | None, scratch: Path) -> Path:
    if arg:
        return Path(arg)
    for p in (Path("slimkit-demo/bundle"), scratch / "demo" / "bundle"):
        if (p / "manifest.json").exists():
            return p
    _log("no demo bundle found: running `slimkit demo` once (a few minutes)")
    subprocess.run([sys.executable, "-m", "slimkit.export.cli", "demo", "--out", str(scratch / "demo"), "--quiet"],
                   check=True)
    return scratch / "demo" / "bundle"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", default=None, help="default: ./slimkit-demo/bundle (made by `slimkit demo`)")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=None)
    p.add_argument("--render", default=None, help="rewrite the markdown from this JSON; measure nothing")
    p.add_argument("--slo-ms", type=float, default=None)
    p.add_argument("--slo-batch", type=int, default=64)
    a = p.parse_args(argv)
    out = Path(a.out) if a.out else (HERE / "out" / "serve-quick.json" if a.quick else HERE / "serve_results.json")
    md = HERE / "SERVE_RESULTS.md" if out == HERE / "serve_results.json" else out.with_suffix(".md")
    if a.render:
        md.write_text(render(json.loads(Path(a.render).read_text())))
        return 0
    scratch = HERE / "out" / "serve"
    scratch.mkdir(parents=True, exist_ok=True)
    bundle = _bundle(a.bundle, scratch)
    from slimkit.runtime import read_manifest

    m = read_manifest(bundle)
    onnx = bundle / m.variants[-1].files["onnx"].path
    ks.ensure_venv(_log)
    x1 = np.random.default_rng(0).standard_normal((1, *m.inputs[0].shape[1:])).astype(np.float32)
    concurrencies = (1, 4, 16) if a.quick else (1, 2, 4, 8, 16, 32)
    seconds, rounds = (2.0, 1) if a.quick else (4.0, 2)
    t0 = time.time()
    tp = throughput(bundle, onnx, x1, concurrencies, seconds, rounds, scratch)
    eng = engine_p50(bundle, x1)
    slo = slo_bench(bundle, a.slo_batch, a.slo_ms, 2 if a.quick else 4, scratch, rounds=1 if a.quick else 2)
    result = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "load_generator": "wrk -t1" if have_wrk() else "python client processes",
                    "note": "client, servers and other jobs share the same cores"},
        "bundle": str(bundle), "variant": m.names[-1], "kserve": ks.KSERVE_PINS,
        "throughput": tp, "equal_p99": equal_p99(tp["rows"]), "engine_in_process": eng,
        "slo": slo, "seconds": time.time() - t0, "quick": a.quick,
    }
    atomic_write(out, json.dumps(result, indent=2))
    md.write_text(render(result))
    _log(f"wrote {out} and {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
