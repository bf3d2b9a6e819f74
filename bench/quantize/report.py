"""``quantize/RESULTS.md``: INT8 twins against FP32 per variant, and the deployment checks."""

from __future__ import annotations

__all__ = ["markdown", "deploy_markdown"]


def markdown(r: dict) -> str:
    """``quantize/RESULTS.md`` of one results file."""
    s = r["settings"]
    lines = [
        "# INT8 versus FP32 (onnxruntime CPU)", "",
        f"Produced by `{r.get('command', '.venv/bin/python bench/quantize.py')}` (raw figures: "
        "`bench/quantize/results.json`). "
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
        lines += deploy_markdown(r["deployment"])
    return "\n".join(lines) + "\n"


def deploy_markdown(d: dict) -> list[str]:
    """The deployment section: Triton repository, Ray Serve answers, HTTP throughput."""
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
