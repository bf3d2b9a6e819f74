"""The serving rows: slimkit's HTTP server against KServe's Python model server, and SLO control.

1. **Throughput and latency at batch 1** (row ``kserve``; closed loop, wrk when installed, else Python
   client processes) for several concurrencies, against KServe (``kserve`` in bench/.venv-kserve, a
   custom ``kserve.Model`` wrapping onnxruntime with the same session options) on the same ONNX file (the
   bundle's largest variant), same JSON request, rounds interleaved (slimkit, KServe, slimkit, ...).
   Also the overhead over the in-process ``Engine.run`` at p50 (concurrency 1).
2. **SLO control** (row ``slo``) under an open-loop bursty trace (Poisson, calm and burst phases, rates set
   from the measured capacity of the largest and smallest variants on this machine): each fixed variant,
   then the SLO controller, then (ablation) the controller with every variant a candidate
   (``--slo-min-gain 0``), replay the same arrivals. SLO attainment (client-observed latency <= SLO) and
   effective accuracy (mean over all requests of the serving variant's manifest accuracy for answers
   within the SLO, 0 otherwise).

Both rows merge into one results.json. Client, servers and everything else on the machine share its
cores; results say how many.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from bench.common import log
from bench.core import Context, Measurement, Result, Row, Timing
from bench.serve import baseline as ks
from bench.serve.load import Server, bursty_trace, closed_loop, free_port, have_wrk, open_loop
from bench.speed import per_call

__all__ = ["measure"]

MODEL = "m"


def _slimkit(bundle: Path, port: int, scratch: Path, *extra: str) -> Server:
    cmd = [sys.executable, "-m", "slimkit.export.cli", "serve", str(bundle), "--name", MODEL, "--port", str(port),
           "--log-level", "warning", *extra]
    return Server(cmd, port, scratch / f"slimkit-{port}.log")


def _kserve(onnx: Path, port: int, scratch: Path) -> Server:
    return Server(ks.command(onnx, port, MODEL), port, scratch / f"kserve-{port}.log")


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
            port = free_port()
            srv = _kserve(onnx, port, scratch) if extra is None else _slimkit(bundle, port, scratch, *extra)
            try:
                closed_loop(srv.url + path, body, headers, 4, 1.0, scratch)  # warm-up
                for c in concurrencies:
                    res = closed_loop(srv.url + path, body, headers, c, seconds, scratch)
                    rows[system][c].append(res)
                    log(f"round {r + 1} {system:17s} c={c:<3d} {res['rps']:8.0f} req/s  p50 {res['p50_ms']:.3f} ms  "
                         f"p99 {res['p99_ms']:.3f} ms  errors {res['errors']}")
            finally:
                srv.stop()
    # per system and concurrency: the round with the median throughput
    table = {s: [sorted(v, key=lambda d: d["rps"])[len(v) // 2] for v in per.values()] for s, per in rows.items()}
    # pytest-benchmark's view: seconds per request in each round (1 / throughput), requests behind it
    ms = [Measurement(system, f"c{c}", [1 / d["rps"] for d in per[c]], iterations=round(np.mean([d["requests"] for d in per[c]])),
                      baseline=None if system == "kserve" else "kserve",
                      extra={"concurrency": c, "rounds": per[c], "what": "seconds per request (1 / throughput), "
                             "closed loop, batch 1, JSON"})
          for system, per in rows.items() for c in concurrencies]
    return {"rows": table, "all_rounds": rows, "request": "JSON, batch 1, largest variant, no selector"}, ms


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


def engine_p50(bundle: Path, x1: np.ndarray, timing: Timing) -> tuple[dict, Measurement]:
    """p50 and p99 of ``Engine.run`` in this process, batch 1, one thread: what the server adds to."""
    from slimkit import runtime

    eng = runtime.load(bundle, threads=1)
    t = per_call({"engine": lambda: eng.run(x1)}, timing)["engine"].ravel()
    figures = {"p50_ms": float(np.percentile(t, 50) * 1e3), "p99_ms": float(np.percentile(t, 99) * 1e3)}
    return figures, Measurement("engine_in_process", "c1", t.tolist(), timing="engine", extra=figures)


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
    port = free_port()
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
    log(f"SLO trace: batch {batch}, capacity {names[-1]} {c_big:.0f} req/s, {names[0]} {c_small:.0f} req/s; "
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
            port = free_port()
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
            log(f"round {r + 1} {label:16s} " + _fmt(_score(res, slo_ms, acc, names)))
    results = {}
    for label, per_round in runs.items():
        results[label] = _score([q for res in per_round for q in res], slo_ms, acc, names)
        results[label]["rounds"] = [_score(res, slo_ms, acc, names) for res in per_round]
        if server_views[label]:
            results[label]["server_side"] = server_views[label]
        log(f"all rounds {label:16s} " + _fmt(results[label]))
    ms = [Measurement(label.replace(" ", "_").replace(",", ""), f"slo-b{batch}", [q[0] for res in per_round for q in res],
                      extra={"what": "seconds per request from its scheduled arrival (open loop)", "slo_ms": slo_ms,
                             **{k: v for k, v in results[label].items() if k != "rounds"}})
          for label, per_round in runs.items()]
    return ms, {"batch": batch, "slo_ms": slo_ms, "capacity_rps": {names[-1]: c_big, names[0]: c_small},
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


def demo_bundle(p: dict, scratch: Path) -> Path:
    """The row's bundle: ``p["bundle"]`` when it holds one (``slimkit demo``'s output), else the demo pipeline
    with the row's samples and epochs, run once and kept in ``scratch``."""
    made = scratch / f"demo-{p['samples']}-t{p['teacher_epochs']}-s{p['epochs']}"
    for path in ([Path(p["bundle"])] if p.get("bundle") else []) + [made / "bundle"]:
        if (path / "manifest.json").exists():
            return path
    from slimkit.export.demo import run_demo

    log(f"no demo bundle: running the demo pipeline once ({p['samples']} samples)")
    run_demo(made, samples=p["samples"], teacher_epochs=p["teacher_epochs"], epochs=p["epochs"], threads=1,
             progress=False, log=lambda *_: None)
    return made / "bundle"


def measure(row: Row, ctx: Context) -> Result:
    """Row ``kserve`` (throughput and overhead) or ``slo`` (``row.params["part"]``), merged into results.json."""
    p, t0 = row.params, time.time()
    bundle = demo_bundle(p, ctx.scratch)
    from slimkit.runtime import read_manifest

    m = read_manifest(bundle)
    doc = ctx.load(row.file) or {}
    doc.update({"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                            "load_generator": "wrk -t1" if have_wrk() else "python client processes",
                            "note": "client, servers and other jobs share the same cores"},
                "bundle": str(bundle), "variant": m.names[-1], "quick": row.quick, "command": ctx.command})
    if p["part"] == "kserve":
        ks.ensure_venv(log)
        onnx = bundle / m.variants[-1].files["onnx"].path
        x1 = np.random.default_rng(0).standard_normal((1, *m.inputs[0].shape[1:])).astype(np.float32)
        tp, ms = throughput(bundle, onnx, x1, p["concurrencies"], p["seconds"], p["rounds"], ctx.scratch)
        eng, m_eng = engine_p50(bundle, x1, row.timing["engine"])
        doc.update({"kserve": ks.KSERVE_PINS, "throughput": tp, "equal_p99": equal_p99(tp["rows"]),
                    "engine_in_process": eng})
        ms.append(m_eng)
    else:
        ms, doc["slo"] = slo_bench(bundle, p["batch"], p.get("slo_ms"), p["cycles"], ctx.scratch, rounds=p["rounds"])
    doc.setdefault("wall_s", {})[p["part"]] = time.time() - t0
    doc["seconds"] = sum(doc["wall_s"].values())
    return Result(doc=doc, measurements=ms)
