"""``sortednet/RESULTS.md``: the Markdown report of one SortedNet row's results.json."""

from __future__ import annotations

from pathlib import Path

__all__ = ["markdown"]


def _table(head: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines + [""]


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def markdown(r: dict, *, json_path: Path) -> str:
    m, st, q = r["machine"], r["settings"], r["quality"]
    out = ["# SortedNet: widths versus independent networks, and the engine's speed", "",
           f"Produced by `{r['command']}` on {r['date']} in {r['wall_s'] / 60:.1f} min; every number below is in "
           f"`{json_path.name}` (machine-readable; the per-round samples of a `python -m bench` run are in "
           "`benchmark.json`).", ""]
    if st["quick"]:
        out += ["**Quick smoke run: too few samples, epochs and rounds for the figures to mean anything.**", ""]
    out += ["## Machine", "",
            f"- CPU: {m['cpu']}, {m['logical_cores']} logical cores ({m['usable_cores']} usable); {m['gpu']}",
            f"- {m['platform']}; Python {m['python']}, torch {m['torch']}, onnxruntime {m['onnxruntime']}, "
            f"numpy {m['numpy']}",
            f"- torch intra-op threads for training: {m['torch_threads']}; ONNX Runtime intra-op threads: `1`, "
            "and `default` (ORT's own choice, one per physical core; inter-op 1, sequential, as the engine's "
            "backend sets them)",
            f"- load average (1, 5, 15 min) at start {_load(m['loadavg_start'])}, at end {_load(m['loadavg_end'])}",
            "- **The machine is shared and noisy**: other processes ran during this run. Every speed figure is "
            "a ratio to its baseline, both timed interleaved in short alternating rounds of this one run; "
            "the ratios matter, not the absolute milliseconds.", ""]

    out += ["## Targets", ""]
    out += _table(["target", "measured", "status"],
                  [[t["target"], t["value"], f"**{t['status']}**"] for t in r["targets"]])

    seeds = st["seeds"]
    out += ["## Quality: SortedNet widths versus independently trained networks", "",
            f"MNIST-1D, {st['samples']} samples (80/10/10 split; test accuracy on {r['onnx_parity'][0]['samples']} "
            f"samples), data seed {st['seed']}. Teacher: zoo `rescnn` {st['model']['channels']} / depths "
            f"{st['model']['depths']}, `fit` for T = {st['teacher_epochs']} epochs. SortedNet: widths "
            f"{tuple(st['widths'])}, S = {st['epochs']} epochs (seed {st['seed']}). Independent: the same zoo "
            f"model with the variant's channels (all parameter shapes checked equal), trained from scratch with "
            f"`fit` for T + S = {st['teacher_epochs'] + st['epochs']} epochs, seeds {tuple(seeds)} "
            f"({'mean' if len(seeds) > 1 else 'one seed'}). Full model = the w1.00 variant.", ""]
    head = ["width", "channels", "params", "MACs", "SortedNet acc"]
    head += [f"independent s{s}" for s in seeds] + (["independent mean"] if len(seeds) > 1 else [])
    head += ["SortedNet - indep. (points)", "ratio to w1.00", "ratio to teacher"]
    rows = []
    for v in q["variants"]:
        row = [v["variant"], tuple(v["channels"]), f"{v['params']:,}", f"{v['macs']:,}", _pct(v["acc_sortednet"])]
        row += [_pct(i["test_accuracy"]) for i in v["independent"]]
        row += [_pct(v["acc_independent_mean"])] if len(seeds) > 1 else []
        row += [f"{v['delta_points_vs_independent']:+.2f}", f"{v['ratio_to_full']:.4f}", f"{v['ratio_to_teacher']:.4f}"]
        rows.append(row)
    out += _table(head, rows)
    n, acc = r["onnx_parity"][0]["samples"], q["variants"][-1]["acc_sortednet"]
    out += [f"Resolution: one test sample is {100 / n:.2f} points, and at {_pct(acc)} the binomial standard error "
            f"of one accuracy is about {100 * (acc * (1 - acc) / n) ** 0.5:.2f} points, so differences of a few "
            f"tenths of a point are within noise. SortedNet is trained once (seed {st['seed']}).", ""]
    t = q["teacher"]
    walls = [["teacher (T epochs)", _pct(t["test_accuracy"]), f"{t['wall_s']:.0f}"],
             ["SortedNet (S epochs, all widths, + BN calibration)", "see above", f"{q['sortednet']['wall_s']:.0f}"]]
    for v in q["variants"]:
        for i in v["independent"]:
            walls.append([f"independent {v['variant']} seed {i['seed']} (T + S epochs)", _pct(i["test_accuracy"]),
                          f"{i['wall_s']:.0f}"])
    walls.append(["export (bundle of all widths, parity-checked)", "", f"{q['export_wall_s']:.0f}"])
    out += ["Training wall times (torch on "
            f"{m['torch_threads']} thread(s), machine shared, so indicative only):", ""]
    out += _table(["run", "test accuracy", "wall s"], walls)

    out += ["## Accuracy through ONNX Runtime versus PyTorch", ""]
    out += _table(["width", "acc PyTorch", "acc ONNX Runtime", "predictions differing", "max abs logit diff"],
                  [[p["variant"], _pct(p["acc_torch"]), _pct(p["acc_onnx"]), p["predictions_differing"],
                    f"{p['max_abs_logit_diff']:.2e}"] for p in r["onnx_parity"]])

    sp = r["speed"]
    out += ["## Speed: engine overhead at batch 1 (largest width, same .onnx file)", "",
            "`ort_raw` is a hand-written `sess.run(None, {name: x})[0]` on a session with the engine backend's "
            "options. Rounds alternate the candidates (order rotating); the ratio is the median over rounds of "
            "candidate / baseline per-call time, with its interquartile range.", ""]
    rows = []
    for o in sp["overhead"]:
        for k in ("ort_raw", "engine_variant", "engine_budget"):
            ratio = o["ratio_vs_raw"].get(k)
            rows.append([o["threads"], _call(k), f"{o['median_us'][k]:.1f}",
                         "1 (baseline)" if ratio is None else f"{ratio['median']:.3f} [{ratio['q1']:.3f}-{ratio['q3']:.3f}]",
                         f"{o['rounds']} x {o['calls_per_round']}", "yes" if o["outputs_equal"] else "**no**"])
    out += _table(["threads", "call", "median us/call", "ratio vs raw [IQR]", "rounds x calls", "outputs equal"], rows)

    out += ["## Speed: switching widths every call", "",
            "The same calls with an equal share per width, run width after width (baseline, `stay`) or "
            "cycling w0.25, w0.50, w0.75, w1.00 on every call (`alternate`), batch 1.", ""]
    rows = []
    for s in sp["switching"]:
        for who, pre in (("Engine.run", ""), ("plain ORT sessions", "raw_")):
            ratio = s[f"{pre}ratio_alternate_vs_stay"]
            rows.append([s["threads"], who, f"{s['median_us'][pre + 'stay']:.1f}",
                         f"{s['median_us'][pre + 'alternate']:.1f}",
                         f"{ratio['median']:.3f} [{ratio['q1']:.3f}-{ratio['q3']:.3f}]",
                         f"{s['rounds']} x {s['calls_per_round']}"])
    out += _table(["threads", "calls through", "stay us/call", "alternate us/call", "alternate / stay [IQR]",
                   "rounds x calls"], rows)
    out += ["The plain-session rows run the same two patterns on one hand-made session per file: a ratio "
            "above 1 there too means the cost of switching comes from ONNX Runtime and the CPU caches "
            "(each width's weights and buffers), not from the engine's selection. The engine's own share, the "
            "median over rounds of (engine alternate/stay) / (plain alternate/stay): "
            + "; ".join(f"threads {s['threads']}: {s['engine_over_raw_switching']['median']:.3f} "
                        f"[{s['engine_over_raw_switching']['q1']:.3f}-{s['engine_over_raw_switching']['q3']:.3f}]"
                        for s in sp["switching"]) + ".", ""]

    out += ["## Speed: latency per width (ONNX Runtime CPU, `Engine.run(x, variant=...)`)", "",
            "Single calls timed one by one, the widths interleaved round by round. Speedup: median over rounds of "
            "(w1.00 per-round median) / (w0.25 per-round median).", ""]
    macs = {v["variant"]: v["macs"] for v in q["variants"]}
    by = {(lat["threads"], lat["batch"]): lat for lat in sp["latency"]}
    for threads in dict.fromkeys(lat["threads"] for lat in sp["latency"]):
        b1, b64 = by[threads, 1], by[threads, 64]
        out += [f"Intra-op threads: {threads}", ""]
        out += _table(["width", "MACs (b1)", "b1 p50 ms", "b1 p95 ms", "b64 p50 ms", "b64 p95 ms"],
                      [[n, f"{macs[n]:,}", f"{b1['per_variant'][n]['p50_ms']:.3f}",
                        f"{b1['per_variant'][n]['p95_ms']:.3f}", f"{b64['per_variant'][n]['p50_ms']:.3f}",
                        f"{b64['per_variant'][n]['p95_ms']:.3f}"] for n in b1["per_variant"]])
        for lat in (b1, b64):
            s = lat["speedup"]
            out += [f"- batch {lat['batch']}: {s['of']} is {s['median']:.2f}x faster than {s['over']} "
                    f"[IQR {s['q1']:.2f}-{s['q3']:.2f}] ({lat['rounds']} rounds x {lat['calls_per_round']} calls "
                    f"per width); MACs ratio {macs[s['over']] / macs[s['of']]:.1f}x"]
        out += [""]
    out += ["With the `default` thread setting ONNX Runtime runs the larger batch-64 convolutions on two threads; "
            "when another process holds a core, those calls wait for it (long p95, inflated w1.00 times), "
            "so the `1`-thread speedup is the one to trust on this box.", ""]

    out += ["## Not measured here", "",
            "- GPU / TensorRT latency: this machine has no GPU.",
            "- Absolute latencies on a quiet machine: the box is shared, so only interleaved ratios are reported "
            "as figures; absolute ms above are indicative.", ""]
    return "\n".join(out)


def _call(k: str) -> str:
    return {"ort_raw": "sess.run (baseline)", "engine_variant": "Engine.run(x, variant=largest)",
            "engine_budget": "Engine.run(x, budget=1.0)"}[k]


def _load(la: list[float]) -> str:
    return ", ".join(f"{x:.2f}" for x in la)
