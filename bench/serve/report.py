"""``serve/RESULTS.md`` from the serving rows' results.json, with the issue's targets checked plainly."""

from __future__ import annotations

__all__ = ["render", "targets"]


def targets(r: dict) -> list[tuple[str, bool | None, str]]:
    """``(target, met, evidence)`` for the three targets of the serving issue."""
    out = []
    eq = [e for e in r["equal_p99"] if e["ratio"] is not None]
    peak = max(r["throughput"]["rows"]["kserve"], key=lambda d: d["rps"])
    at_peak = next((e for e in r["equal_p99"] if e["kserve_concurrency"] == peak["concurrency"]), None)
    if at_peak and at_peak["ratio"] is not None:
        worst = min(e["ratio"] for e in eq)
        out.append(("throughput >= 1.5x KServe at equal p99, batch 1", at_peak["ratio"] >= 1.5,
                    f"{at_peak['ratio']:.2f}x at KServe's peak ({peak['rps']:.0f} req/s, p99 {peak['p99_ms']:.2f} ms, "
                    f"c={peak['concurrency']}) vs slimkit {at_peak['slimkit_rps']:.0f} req/s at p99 "
                    f"{at_peak['slimkit_p99_ms']:.2f} ms; lowest over all KServe points {worst:.2f}x"))
    else:
        out.append(("throughput >= 1.5x KServe at equal p99, batch 1", False,
                    "slimkit had no point at or under KServe's p99 at its peak"))
    c1 = next(s for s in r["throughput"]["rows"]["slimkit"] if s["concurrency"] == 1)
    overhead = c1["p50_ms"] - r["engine_in_process"]["p50_ms"]
    out.append(("server overhead over the in-process Engine <= 1 ms at p50", overhead <= 1.0,
                f"HTTP p50 {c1['p50_ms']:.3f} ms - Engine.run p50 {r['engine_in_process']['p50_ms']:.3f} ms "
                f"= {overhead:.3f} ms"))
    pol = r["slo"]["policies"]
    ctrl = pol["SLO controller"]
    fixed = {k: v for k, v in pol.items() if k.startswith("fixed ") and v["attainment"] >= 0.99}
    best = max(fixed.items(), key=lambda kv: kv[1]["effective_accuracy"]) if fixed else None
    met = ctrl["attainment"] >= 0.99 and (best is None or ctrl["effective_accuracy"] >= best[1]["effective_accuracy"])
    ref = (f"best fixed variant meeting 99%: {best[0]} ({best[1]['effective_accuracy']:.5f})" if best
           else "no fixed variant meets 99%")
    out.append(("SLO controller >= 99% within SLO, effective accuracy >= best fixed variant meeting 99%", met,
                f"controller {ctrl['attainment']:.2%} within {r['slo']['slo_ms']:g} ms, effective accuracy "
                f"{ctrl['effective_accuracy']:.5f}; {ref}"))
    return out


def render(r: dict) -> str:
    m = r["machine"]
    tp = r["throughput"]["rows"]
    lines = [
        "# Serving benchmark: slimkit server vs KServe, and SLO control",
        "",
        f"Written by `{r.get('command', '.venv/bin/python bench/serve.py' + (' --quick' if r.get('quick') else ''))}` "
        f"({r['seconds']:.0f} s). Bundle `{r['bundle']}`, variant `{r['variant']}` for the throughput runs. "
        f"Baseline: {', '.join(r['kserve'])} (custom `kserve.Model` wrapping onnxruntime on the same ONNX "
        "file, same session options, gRPC and per-request latency logging off), in bench/.venv-kserve.",
        "",
        f"Machine: {m['cpus']} CPUs ({m['platform']}, Python {m['python']}), shared with other jobs; "
        f"load generator {m['load_generator']}. **Client and server compete for the same {m['cpus']} cores**, "
        "so absolute numbers are low and noisy; the ratios come from interleaved rounds in the same run.",
        "",
        "## Targets",
        "",
        "| target | met | evidence |",
        "| --- | --- | --- |",
    ]
    for name, met, ev in targets(r):
        lines.append(f"| {name} | {'**yes**' if met else '**no**'} | {ev} |")
    lines += ["", "## Throughput and latency, batch 1, JSON requests (closed loop)", "",
              "| concurrency | slimkit req/s | p50 ms | p99 ms | KServe req/s | p50 ms | p99 ms | throughput ratio |",
              "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for s, k in zip(tp["slimkit"], tp["kserve"]):
        lines.append(f"| {s['concurrency']} | {s['rps']:.0f} | {s['p50_ms']:.3f} | {s['p99_ms']:.3f} | {k['rps']:.0f} | "
                     f"{k['p50_ms']:.3f} | {k['p99_ms']:.3f} | {s['rps'] / k['rps']:.2f}x |")
    n_rounds = len(next(iter(r["throughput"]["all_rounds"]["slimkit"].values())))
    lines += ["", f"Each cell is the round with the upper-median throughput of {n_rounds} interleaved round(s), picked "
              "the same way for every system (all rounds are in the JSON). Errors: "
              f"{sum(d['errors'] for rows in tp.values() for d in rows)}.", ""]
    if "slimkit_pool_only" in tp:
        lines += ["Stack ablation: the default runs a request on the event loop when it is alone in the server and "
                  "its model takes under 100 us, and uses the inference thread pool otherwise; `--inline-us 0` sends "
                  "every request to the pool:", "",
                  "| concurrency | default req/s | p50 ms | pool-only req/s | p50 ms | default / pool-only |",
                  "| ---: | ---: | ---: | ---: | ---: | ---: |"]
        for s, q in zip(tp["slimkit"], tp["slimkit_pool_only"]):
            lines.append(f"| {s['concurrency']} | {s['rps']:.0f} | {s['p50_ms']:.3f} | {q['rps']:.0f} | {q['p50_ms']:.3f} | "
                         f"{s['rps'] / q['rps']:.2f}x |")
        lines.append("")
    lines += [

              "Throughput at equal p99 (for each KServe point, slimkit's best throughput with p99 at most KServe's):",
              "", "| KServe c | KServe req/s | KServe p99 ms | slimkit req/s (c) | slimkit p99 ms | ratio |",
              "| ---: | ---: | ---: | ---: | ---: | ---: |"]
    for e in r["equal_p99"]:
        if e["ratio"] is None:
            lines.append(f"| {e['kserve_concurrency']} | {e['kserve_rps']:.0f} | {e['kserve_p99_ms']:.3f} | none | | |")
        else:
            lines.append(f"| {e['kserve_concurrency']} | {e['kserve_rps']:.0f} | {e['kserve_p99_ms']:.3f} | "
                         f"{e['slimkit_rps']:.0f} ({e['slimkit_concurrency']}) | {e['slimkit_p99_ms']:.3f} | "
                         f"{e['ratio']:.2f}x |")
    s = r["slo"]
    lines += ["", "## SLO control under a bursty open-loop trace", "",
              f"Requests of batch {s['batch']} (binary tensors). Poisson arrivals alternating {s['calm_s']:g} s calm at "
              f"{s['calm_rps']:.0f} req/s and {s['burst_s']:g} s bursts at {s['burst_rps']:.0f} req/s, {s['cycles']} cycles, "
              f"{s['requests']} requests, the same arrivals for every policy, replayed in {s.get('rounds', 1)} round(s) "
              "in alternating policy order (figures pool all rounds; per-round figures are in the JSON). Rates come from the capacity measured "
              f"in this run ({', '.join(f'{k} {v:.0f} req/s' for k, v in s['capacity_rps'].items())}, 4 connections). "
              f"SLO {s['slo_ms']:g} ms, client-observed from the scheduled arrival. Effective accuracy: the "
              "serving variant's manifest accuracy for answers within the SLO, 0 for late or failed ones, averaged "
              "over all requests.", "",
              "| policy | within SLO | effective accuracy | p50 ms | p95 ms | p99 ms | errors | variants served |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for label, p in s["policies"].items():
        mix = ", ".join(f"{k} {v:.1%}" for k, v in p["variant_mix"].items())
        lines.append(f"| {label} | {p['attainment']:.2%} | {p['effective_accuracy']:.4f} | {p['p50_ms']:.1f} | "
                     f"{p['p95_ms']:.1f} | {p['p99_ms']:.1f} | {p['errors']} | {mix} |")
    ctrl = s["policies"]["SLO controller"]
    if ctrl.get("rounds"):
        lines += ["", "SLO controller per round: " + "; ".join(
            f"{q['attainment']:.2%} within, effective accuracy {q['effective_accuracy']:.4f}" for q in ctrl["rounds"])]
    if ctrl.get("server_side"):
        lines += ["", "The controller's own view (server-side timing from `/metrics`, warm-up requests included): " + "; ".join(
            f"{v['attainment']:.2%} within, effective accuracy {v['effective_accuracy']:.4f}" for v in ctrl["server_side"])]
    lines += ["", "Variant accuracies (manifest): " + ", ".join(f"{k} {v:.3f}" for k, v in s["accuracy"].items()), ""]
    return "\n".join(lines)
