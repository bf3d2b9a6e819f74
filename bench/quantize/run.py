"""INT8 versus FP32, per variant of the MNIST-1D demo family: accuracy and onnxruntime CPU latency;
then issue 7's deployment targets on the same bundle (Triton repository, Ray Serve).

    .venv/bin/python bench/quantize.py [--out bench/out/quantize] [--samples 10000] [--no-deploy]

Steps: ``slimkit demo``'s own pipeline (:func:`slimkit.export.demo.run_demo`: residual 1-D CNN teacher,
SortedNet widths 0.25/0.5/0.75/1.0), then ``export.bundle(fam, ..., quantize="int8",
calibration=splits.val)``. Accuracy of both precisions on the test split through onnxruntime; latency
of both at batch 1 and 32 in the same run, 1 intra-op thread, interleaved FP32/INT8 rounds so machine
noise hits both alike; the speed-up is the ratio of the medians. Targets (issue 7): INT8 at most 1
point less accurate and at least 1.5x faster at batch 32.

Deployment stage (:func:`deployment_checks`): every variant and twin of that bundle in a Triton repository whose
configs parse into Triton's ``ModelConfig`` and whose models match the engine under onnxruntime; every
variant answering through a Ray Serve deployment (2 replicas, local Ray, 2 CPUs) with the engine's
outputs; and HTTP throughput of Ray Serve against one ``slimkit serve`` process under the same load.

Writes ``bench/quantize_results.json`` and ``bench/QUANTIZE_RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from _bench import raw_session

from slimkit import compress, export, runtime
from slimkit.export.demo import run_demo
from slimkit.runtime.backends import open_backends
from slimkit.runtime.manifest import read_manifest, resolve_file

HERE = Path(__file__).parent
BATCHES = (1, 32)
TARGET_DROP, TARGET_SPEEDUP = 0.01, 1.5


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} CPUs)"
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _accuracy(sess: ort.InferenceSession, loader) -> float:
    name = sess.get_inputs()[0].name
    hits = total = 0
    for x, y in loader:
        hits += int((sess.run(None, {name: x.numpy()})[0].argmax(-1) == y.numpy()).sum())
        total += len(y)
    return hits / total


def _interleaved_p50(sessions: dict[str, ort.InferenceSession], x: np.ndarray, *, rounds: int,
                     calls: int) -> dict[str, float]:
    """Median per-call ms of each session, measured in alternating rounds of ``calls`` calls."""
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for s in sessions.values():  # warm-up
        for _ in range(20):
            s.run(None, {s.get_inputs()[0].name: x})
    for r in range(rounds):
        order = list(sessions) if r % 2 == 0 else list(sessions)[::-1]
        for k in order:
            s, feed = sessions[k], {sessions[k].get_inputs()[0].name: x}
            for _ in range(calls):
                t0 = time.perf_counter()
                s.run(None, feed)
                times[k].append(time.perf_counter() - t0)
    return {k: float(np.median(v) * 1e3) for k, v in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(HERE / "out" / "quantize"))
    p.add_argument("--samples", type=int, default=10_000)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--calls", type=int, default=100)
    p.add_argument("--no-deploy", action="store_true", help="skip the Triton / Ray Serve stage")
    args = p.parse_args()
    torch.set_num_threads(1)  # 2 threads stall ~30x on a shared 2-core box
    t0 = time.perf_counter()
    out = Path(args.out)
    demo = run_demo(out, samples=args.samples, threads=1, progress=False, log=lambda *_: None)
    splits = compress.data.mnist1d(num_samples=args.samples, layout="channels", seed=0)
    fam = compress.Family.load(out / "family")
    t_train = time.perf_counter() - t0
    bundle = export.bundle(fam, splits.example_input, out / "bundle-int8", overwrite=True, quantize="int8",
                           calibration=splits.val, latency_batches=())
    manifest = read_manifest(bundle)
    x_test = np.concatenate([x.numpy() for x, _ in splits.test])
    rows = []
    for v in manifest.variants:
        twin = manifest.variant(f"{v.name}-int8")
        sess = {"fp32": raw_session(resolve_file(bundle, v.files["onnx"].path), 1),
                "int8": raw_session(resolve_file(bundle, twin.files["onnx"].path), 1)}
        row = {"variant": v.name, "macs": v.macs, "params": v.params,
               "quantization": twin.config["quantization"],
               "acc_fp32": _accuracy(sess["fp32"], splits.test), "acc_int8": _accuracy(sess["int8"], splits.test)}
        for b in BATCHES:
            lat = _interleaved_p50(sess, np.ascontiguousarray(x_test[:b]), rounds=args.rounds, calls=args.calls)
            row[f"p50_ms_fp32_b{b}"], row[f"p50_ms_int8_b{b}"] = lat["fp32"], lat["int8"]
            row[f"speedup_b{b}"] = lat["fp32"] / lat["int8"]
        row["acc_drop_points"] = 100 * (row["acc_fp32"] - row["acc_int8"])
        row["meets_accuracy"] = row["acc_fp32"] - row["acc_int8"] <= TARGET_DROP + 1e-9
        row["meets_speedup_b32"] = row["speedup_b32"] >= TARGET_SPEEDUP
        rows.append(row)
        print(f"{v.name}: acc {row['acc_fp32']:.4f} -> {row['acc_int8']:.4f}, speed-up b1 "
              f"{row['speedup_b1']:.2f}x, b32 {row['speedup_b32']:.2f}x", flush=True)
    result = {"rows": rows, "settings": {"samples": args.samples, "rounds": args.rounds, "calls": args.calls,
                                         "threads": 1, "batches": list(BATCHES), "calibration": "val split",
                                         "test_samples": int(len(x_test))},
              "teacher_test_accuracy": demo["teacher"]["test"]["accuracy"],
              "machine": {"cpu": _cpu_name(), "python": platform.python_version(),
                          "onnxruntime": ort.__version__, "torch": torch.__version__},
              "timings_s": {"train": t_train}}
    if not args.no_deploy:
        result["deployment"] = deployment_checks(bundle, out, np.ascontiguousarray(x_test[:8]))
    result["timings_s"]["total"] = time.perf_counter() - t0
    (HERE / "quantize_results.json").write_text(json.dumps(result, indent=2) + "\n")
    (HERE / "QUANTIZE_RESULTS.md").write_text(_markdown(result))
    print(f"wrote {HERE / 'quantize_results.json'} and {HERE / 'QUANTIZE_RESULTS.md'}")


def _markdown(r: dict) -> str:
    s = r["settings"]
    lines = [
        "# INT8 versus FP32 (onnxruntime CPU)", "",
        "Produced by `.venv/bin/python bench/quantize.py` (raw figures: `bench/quantize_results.json`). "
        f"MNIST-1D demo family (SortedNet on the residual 1-D CNN, {s['samples']} samples), INT8 twins from "
        "`export.bundle(..., quantize=\"int8\", calibration=splits.val)`: static QDQ, uint8 activations, "
        "int8 per-tensor weights, MinMax calibration on the validation split. Accuracy on the "
        f"{s['test_samples']}-sample test split; p50 latency per call, 1 intra-op thread, {s['rounds']} "
        f"interleaved rounds of {s['calls']} calls per precision; speed-up = FP32 p50 / INT8 p50, same run. "
        f"Machine: {r['machine']['cpu']}, onnxruntime {r['machine']['onnxruntime']}.", "",
        "| variant | MACs | acc FP32 | acc INT8 | drop (pts) | p50 b1 FP32 / INT8 (ms) | speed-up b1 "
        "| p50 b32 FP32 / INT8 (ms) | speed-up b32 | targets (<=1 pt, >=1.5x b32) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for x in r["rows"]:
        ok = ("met" if x["meets_accuracy"] and x["meets_speedup_b32"] else
              "not met: " + ", ".join(k for k, bad in (("accuracy", not x["meets_accuracy"]),
                                                        ("speed", not x["meets_speedup_b32"])) if bad))
        lines.append(
            f"| {x['variant']} | {x['macs']:,} | {x['acc_fp32']:.4f} | {x['acc_int8']:.4f} | "
            f"{x['acc_drop_points']:+.1f} | {x['p50_ms_fp32_b1']:.4f} / {x['p50_ms_int8_b1']:.4f} | "
            f"{x['speedup_b1']:.2f}x | {x['p50_ms_fp32_b32']:.4f} / {x['p50_ms_int8_b32']:.4f} | "
            f"{x['speedup_b32']:.2f}x | {ok} |")
    slow = [x["variant"] for x in r["rows"] if x["speedup_b1"] < 1.0]
    lines += ["", "Batch 1: " + (f"INT8 is not faster for {', '.join(slow)} (the added Quantize/Dequantize "
                                  "nodes cost more than the integer kernels save on so little work)."
                                  if slow else "INT8 is at least as fast as FP32 for every variant."), ""]
    if "deployment" in r:
        lines += _deploy_markdown(r["deployment"])
    return "\n".join(lines) + "\n"


# -- deployment targets ------------------------------------------------------------------------------


def deployment_checks(bundle: Path, out: Path, x: np.ndarray) -> dict:
    """Triton repository + Ray Serve checks of every variant, and HTTP throughput Ray vs slimkit serve."""
    return {"triton": _triton_check(bundle, out / "triton", x), **_ray_check(bundle, x)}


def _engines(bundle: Path) -> dict[str, runtime.Engine]:
    m = read_manifest(bundle)
    out = {}
    for precision in m.precisions:
        mp = m.with_precision(precision)
        out[precision] = runtime.Engine(mp, open_backends(bundle, mp, threads=1), bundle_dir=bundle)
    return out


def _triton_check(bundle: Path, repo: Path, x: np.ndarray) -> list[dict]:
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    export.to_triton(bundle, repo, overwrite=True)
    engines, m = _engines(bundle), read_manifest(bundle)
    rows = []
    for v in m.variants + m.twins:
        cfg = text_format.Parse((repo / v.name / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
        sess = raw_session(repo / v.name / "1" / "model.onnx", 1)
        got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
        want = engines[v.precision].run(x, variant=v.name)
        rows.append({"model": v.name, "platform": cfg.platform, "max_batch_size": cfg.max_batch_size,
                     "schema_ok": cfg.name == v.name, "max_abs_diff_vs_engine": float(np.abs(got - want).max())})
    return rows


def _ray_check(bundle: Path, x: np.ndarray) -> dict:
    import socket
    import subprocess
    import sys

    import ray
    from ray import serve

    from slimkit.runtime import ray_serve

    def free_port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    engines = _engines(bundle)
    ray.init(num_cpus=2, include_dashboard=False, address="local", log_to_driver=False, configure_logging=False)
    ray_port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": ray_port})
    answers, load = [], {}
    try:
        for precision, eng in engines.items():  # one app at a time: two replicas take both CPUs
            h = ray_serve.run(bundle, num_replicas=2, num_cpus=1, threads=1, precision=precision,
                              app_name=f"slimkit-{precision}", model_name=f"demo-{precision}")
            for name in eng.names:
                got = h.infer.remote(x, variant=name).result()
                answers.append({"variant": name, "served_by": got["variant"],
                                "equal_to_engine": bool(np.array_equal(got["output"], eng.run(x, variant=name)))})
            if precision == "fp32":
                load["ray_serve_2_replicas"] = _http_load(
                    f"http://127.0.0.1:{ray_port}/v2/models/demo-fp32/infer", x[:1])
            serve.delete(f"slimkit-{precision}")
    finally:
        serve.shutdown()
        ray.shutdown()
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "slimkit.export.cli", "serve", str(bundle), "--port", str(port),
                             "--name", "demo", "--log-level", "warning"])
    try:
        _wait_ready(f"http://127.0.0.1:{port}/v2/health/ready")
        load["slimkit_serve_1_process"] = _http_load(f"http://127.0.0.1:{port}/v2/models/demo/infer", x[:1])
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    return {"ray_answers": answers, "http_load": load}


def _wait_ready(url: str, timeout: float = 120.0) -> None:
    import urllib.request

    end = time.time() + timeout
    while time.time() < end:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"{url} did not become ready in {timeout:.0f} s")


def _http_load(url: str, x: np.ndarray, *, clients: int = 4, seconds: float = 10.0) -> dict:
    """Closed-loop load: ``clients`` threads, each with one keep-alive connection, for ``seconds``."""
    import http.client
    import threading
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
            "p95_ms": float(np.percentile(lat, 95) * 1e3)}


def _deploy_markdown(d: dict) -> list[str]:
    t = d["triton"]
    ok_cfg = all(r["schema_ok"] for r in t)
    worst = max(r["max_abs_diff_vs_engine"] for r in t)
    ray_ok = all(a["equal_to_engine"] and a["served_by"] == a["variant"] for a in d["ray_answers"])
    lines = ["## Deployment targets on the same bundle", "",
             f"- Triton repository (`export.to_triton`): {len(t)} models ({', '.join(r['model'] for r in t)}); "
             f"every config.pbtxt parsed into Triton's `ModelConfig` (tritonclient[grpc]): "
             f"{'yes' if ok_cfg else 'NO'}; largest |difference| of a model file under onnxruntime versus the "
             f"engine: {worst:.2g}.",
             f"- Ray Serve (2 replicas, local Ray, 2 CPUs): {len(d['ray_answers'])} variants and twins answered, "
             f"outputs equal to the engine's: {'yes, all' if ray_ok else 'NO'}.", "",
             "HTTP throughput, budget=0.5, batch 1, JSON, closed loop with 4 client threads on the same 2-CPU "
             "machine (clients, server and Ray share the cores):", "",
             "| server | requests/s | p50 ms | p95 ms | errors |", "|---|---:|---:|---:|---:|"]
    for name, r in d["http_load"].items():
        lines.append(f"| {name} | {r['throughput_rps']:.0f} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} | {r['errors']} |")
    load = d["http_load"]
    if len(load) == 2:
        ratio = load["ray_serve_2_replicas"]["throughput_rps"] / load["slimkit_serve_1_process"]["throughput_rps"]
        verdict = ("Ray Serve is slower here: each request crosses its HTTP proxy and an actor call, and on "
                   "one 2-CPU box the replicas cannot add cores; its case is scaling across machines"
                   if ratio < 1 else "Ray Serve's two replicas outrun one slimkit serve process here")
        lines += ["", f"Ray Serve / slimkit serve throughput: {ratio:.2f}x. {verdict}."]
    return lines


if __name__ == "__main__":
    main()
