"""The GPU check's targets (issue 18) judged on the results, and the Markdown report."""

from __future__ import annotations

from typing import Any

from bench.gpu.backends import BACKENDS, REFERENCE

__all__ = ["TARGETS", "judge", "markdown"]

TARGETS = {
    "parity_max_abs": 1e-3,        # every variant, every backend, against onnxruntime CPU
    "width_speedup_b64": 2.0,      # on the GPU: smallest width at batch 64 vs full width
    "switching_ratio": 1.05,       # on the GPU: switching variant every call vs repeating one (batch 1)
    "cuda_graphs_speedup_b1": 1.5,  # demo family: eager module p50 over CUDA-graphs replay, batch 1
}


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("pass" if ok else "FAIL")


def _worst_parity(parity: dict) -> tuple[float | None, str | None, str | None]:
    """(largest max_abs, its variant, an error) over the variants of one backend's parity table."""
    worst, where = None, None
    for variant, p in parity.items():
        if "error" in p:
            return None, variant, p["error"]
        if p["max_abs"] is None:
            return None, variant, "non-finite output"
        if worst is None or p["max_abs"] > worst:
            worst, where = p["max_abs"], variant
    return worst, where, None


def judge(results: dict) -> list[dict]:
    """One row per (target, family, backend): the figure, the threshold and pass / FAIL / n/a."""
    rows = []
    on_gpu = results["environment"]["device"] == "cuda"
    for fam_name, fam in results.get("families", {}).items():
        for name, be in fam.get("backends", {}).items():
            if be.get("status") != "measured" or name == REFERENCE:
                continue
            worst, where, err = _worst_parity(be.get("parity", {}))
            rows.append({"target": "parity", "family": fam_name, "backend": name,
                         "figure": err or (None if worst is None else f"max abs diff {worst:.2e} ({where})"),
                         "threshold": f"<= {TARGETS['parity_max_abs']:g}",
                         "verdict": _verdict(False if err else None if worst is None
                                             else worst <= TARGETS["parity_max_abs"])})
            gpu_backend = on_gpu and be.get("device") == "cuda"
            speed = be.get("latency", {}).get("64", {}).get("speedup")
            if speed:
                rows.append({"target": "width speedup, batch 64", "family": fam_name, "backend": name,
                             "figure": f"{speed['of']} {speed['median']:.2f}x faster than {speed['over']}",
                             "threshold": f">= {TARGETS['width_speedup_b64']:g}x on the GPU",
                             "verdict": _verdict(speed["median"] >= TARGETS["width_speedup_b64"]
                                                 if gpu_backend else None)})
            sw = be.get("switching")
            if sw:
                r = sw["ratio_alternate_vs_stay"]["median"]
                rows.append({"target": "switching every call, batch 1", "family": fam_name, "backend": name,
                             "figure": f"{r:.3f}x the time of repeating one", "threshold":
                             f"<= {TARGETS['switching_ratio']:g}x on the GPU",
                             "verdict": _verdict(r <= TARGETS["switching_ratio"] if gpu_backend else None)})
        graphs = fam.get("cuda_graphs", {})
        per = {v: g["ratios"]["eager"]["median"] for v, g in graphs.items()
               if isinstance(g, dict) and "eager" in g.get("ratios", {})}
        if per or "skipped" in graphs or "error" in graphs:
            worst_v = min(per, key=per.get) if per else None
            figure = (f"eager / graphs p50 {per[worst_v]:.2f}x (slowest gain: {worst_v})" if per
                      else graphs.get("skipped") or graphs.get("error"))
            applies = bool(fam.get("graphs_target"))
            rows.append({"target": "CUDA graphs vs eager, batch 1", "family": fam_name, "backend": "torch.export+cuda_graphs",
                         "figure": figure, "threshold": f">= {TARGETS['cuda_graphs_speedup_b1']:g}x"
                         + ("" if applies else " (demo family only)"),
                         "verdict": _verdict(all(r >= TARGETS["cuda_graphs_speedup_b1"] for r in per.values())
                                             if per and applies else None)})
    return rows


def _fmt(x: Any, spec: str = ".3g") -> str:
    return "-" if x is None else format(x, spec)


def _table(head: list[str], rows: list[list[Any]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head),
            *("| " + " | ".join(str(c) for c in r) + " |" for r in rows), ""]


def _environment(env: dict, settings: dict) -> list[str]:
    gpu = env.get("gpu", {})
    libs = ", ".join(f"{k} {v}" for k, v in env["libraries"].items() if v)
    absent = ", ".join(k for k, v in env["libraries"].items() if not v)
    rows = [["date (UTC)", env["date_utc"]], ["device", env["device"]],
            ["GPU", f"{gpu.get('name', '-')} (compute {gpu.get('capability', '-')}, {gpu.get('memory_gib', '-')} GiB, "
                    f"{gpu.get('multiprocessors', '-')} SMs)" if gpu else "none used"],
            ["driver", gpu.get("driver", "-")], ["CUDA (torch build) / cuDNN",
                                                f"{env['torch_cuda_build'] or '-'} / {gpu.get('cudnn', '-')}"],
            ["Python / platform", f"{env['python']} / {env['platform']}"],
            ["CPU cores / torch threads", f"{env['cpu_cores']} / {env['torch_threads']}"],
            ["libraries", libs], ["not installed", absent or "-"],
            ["onnxruntime providers", ", ".join(env["onnxruntime_providers"])],
            ["float32 on CUDA (defaults)", ", ".join(f"{k} = {v}" for k, v in env["fp32"].items())],
            ["slimkit installed by", env["slimkit_install"]], ["commit", env.get("git_commit") or "-"],
            ["mode", _mode(settings)]]
    return _table(["", ""], rows)


def _mode(settings: dict) -> str:
    m = settings["measure"]
    return (f"{settings['mode']}: {m['warmup']} warm-up calls, then {m['rounds']} rounds x {m['calls']} timed calls "
            f"per variant and batch {m['batches']}; ratios over {m['ratio_rounds']} rounds x {m['ratio_calls']} calls")


def _family(name: str, fam: dict) -> list[str]:
    out = [f"## {fam.get('title', name)}", ""]
    if "skipped" in fam:
        return [*out, f"Skipped: {fam['skipped']}", ""]
    if "build" in fam:
        b = fam["build"]
        teacher = (f"; teacher val accuracy {b['teacher_val']['accuracy']:.3f}"
                   if "accuracy" in b.get("teacher_val", {}) else "")
        out += [f"Built here: {b['model']}; {b['data']}; input {b['input']}{teacher}; "
                + ", ".join(f"{k} {v}" for k, v in b.items() if k not in ("model", "data", "input", "teacher_val")),
                f"Times: {', '.join(f'{k} {v:.0f} s' for k, v in fam['timings_s'].items())}.", ""]
        out += _table(["variant", "params", "MACs", "val accuracy"],
                      [[v["name"], f"{v['params']:,}", f"{v['macs']:,}", _fmt(v["metrics"].get("accuracy"), ".3f")]
                       for v in fam["variants"]])
    if "error" in fam:
        out += ["**Error**: `" + fam["error"] + "`", "", "```", fam.get("traceback", ""), "```", ""]
    bes = fam.get("backends", {})
    if not bes:
        return out
    out += ["### Backends", ""]
    out += _table(["backend", "status", "how / why"],
                  [[n, b["status"], b.get("how") or b.get("reason") or b.get("error", "")]
                   for n, b in bes.items()])
    variants = [v["name"] for v in fam.get("variants", [])]
    measured = [n for n in BACKENDS if bes.get(n, {}).get("status") == "measured"]
    par = [n for n in measured if "parity" in bes[n]]
    if par:
        out += ["### Parity against onnxruntime CPU (max abs diff, batches " +
                ", ".join(map(str, next(iter(bes[par[0]]["parity"].values())).get("batches", []))) + ")", ""]
        out += _table(["variant", *par], [[v, *(_fmt(bes[n]["parity"].get(v, {}).get("max_abs"), ".2e")
                                                 if "error" not in bes[n]["parity"].get(v, {}) else "error"
                                                 for n in par)] for v in variants])
        ieee = [n for n in par if "parity_ieee_fp32" in bes[n]]
        if ieee:
            out += ["With TF32 off (full IEEE float32 on CUDA), for comparison:", ""]
            out += _table(["variant", *ieee], [[v, *(_fmt(bes[n]["parity_ieee_fp32"].get(v, {}).get("max_abs"), ".2e")
                                                     for n in ieee)] for v in variants])
    timed = [n for n in measured if "latency" in bes[n]]
    for batch in sorted({b for n in timed for b in bes[n]["latency"]}, key=int):
        out += [f"### Latency at batch {batch} (ms, p50 / p99; throughput in samples/s)", ""]
        out += _table(["variant", *timed], [[v, *(_lat(bes[n]["latency"][batch]["per_variant"].get(v))
                                                  for n in timed)] for v in variants])
    if timed:
        rows = []
        for n in timed:
            sp = bes[n]["latency"].get("64", {}).get("speedup") or {}
            sw = bes[n].get("switching", {}).get("ratio_alternate_vs_stay", {})
            rows.append([n, _fmt(sp.get("median"), ".2f"), _fmt(sw.get("median"), ".3f"),
                         f"{_fmt(sw.get('q1'), '.3f')}-{_fmt(sw.get('q3'), '.3f')}"])
        out += ["### Ratios (median over interleaved rounds)", ""]
        out += _table(["backend", "smallest vs largest width, batch 64 (x faster)",
                       "switching every call / repeating one, batch 1", "switching IQR"], rows)
    out += [f"{n}: {bes[n]['timing']}." for n in measured if "timing" in bes[n]]
    out += [""] if any("timing" in bes[n] for n in measured) else []
    graphs = fam.get("cuda_graphs", {})
    if graphs and "skipped" not in graphs and "error" not in graphs:
        out += ["### CUDA graphs at batch 1 (median us per call; ratio = other / graphs)", ""]
        out += _table(["variant", "eager", "torch.export", "torch.export+cuda_graphs", "eager / graphs",
                       "torch.export / graphs"],
                      [[v, *(_fmt(g["median_us"].get(k), ".1f") for k in ("eager", "torch.export",
                                                                          "torch.export+cuda_graphs")),
                        *(_fmt(g["ratios"].get(k, {}).get("median"), ".2f") for k in ("eager", "torch.export"))]
                       for v, g in graphs.items()])
    elif graphs:
        out += [f"CUDA graphs vs eager: {graphs.get('skipped') or graphs.get('error')}", ""]
    return out


def _lat(p: dict | None) -> str:
    if not p:
        return "-"
    return f"{p['p50_ms']:.3f} / {p['p99_ms']:.3f} ({p['throughput_per_s']:,.0f}/s)"


def markdown(results: dict) -> str:
    """The whole report: environment, targets, then every family's tables."""
    s = results["settings"]
    out = ["# GPU check (issue 18)", "",
           f"Written by `{s['command']}` in {results.get('elapsed_s', 0):.0f} s"
           + (f" (budget {s['budget_s']:.0f} s)" if s.get("budget_s") else "") + ". Raw figures: `"
           + s["json_name"] + "` beside this file. Every call takes a numpy batch and returns numpy "
           "(host to device, run, device to host), as a served request does; ratios are medians over "
           "interleaved rounds timed in this run.", "",
           "## Environment", "", *_environment(results["environment"], s),
           "## Targets", ""]
    rows = results.get("targets", [])
    out += _table(["target", "family", "backend", "figure", "threshold", "verdict"],
                  [[r["target"], r["family"], r["backend"], r["figure"] or "-", r["threshold"], r["verdict"]]
                   for r in rows]) if rows else ["No figures yet.", ""]
    for name, fam in results.get("families", {}).items():
        out += _family(name, fam)
    if results.get("notes"):
        out += ["## Notes", "", *(f"- {n}" for n in results["notes"]), ""]
    return "\n".join(out).rstrip() + "\n"
