"""``RESULTS.md``: the Markdown summary of one ``bench/run.py`` results dict."""

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
    out = ["# slimkit benchmark results", "",
           f"Produced by `{r['command']}` on {r['date']} in {r['wall_s'] / 60:.1f} min; every number below is in "
           f"`{json_path.name}` (machine-readable, with per-round details).", ""]
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

    out += ["## Other benchmarks (headline figures)", "",
            "Each method and the serving stack has its own script and report (bench/README.md); every figure "
            "below comes from that script's run, against its baseline in the same run. Update this table "
            "(`OTHER` in bench/_report.py) when one of those reports changes.", "",
            "| what | command | headline | report |", "| --- | --- | --- | --- |"]
    out += [f"| {what} | `{cmd}` | {headline} | [{doc}]({doc}) |" for what, cmd, headline, doc in OTHER]
    out += [""]
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


# (what, command, headline, report): hand-copied from each report; see "Other benchmarks" above.
OTHER = [
    ("sparse RNN pruning, MNIST-1D GRU / LSTM, 3 seeds", "python bench/sparse_rnn.py --seed S",
     "80% unstructured: GRU -0.5 points from dense (5 fine-tuning epochs), LSTM -1.0 (5 epochs) / -0.23 "
     "(8 epochs); 90% gradual 91.0% / 92.1% (8 ep.) vs torch.nn.utils.prune 70.0% / 64.7%; half the hidden "
     "units: 2.4x-2.9x faster on ONNX Runtime at batch 32, -0.57 / -0.60 points (8 ep.); 90% files zip to 0.20x",
     "SPARSE_RNN_SEEDS.md"),
    ("SNNK vs truncated SVD, MNIST-1D MLP and Transformer FFNs", "python bench/snnk.py",
     "53x fewer block parameters at -0.6 points vs the zoo MLP, but -3.9 at best (6.7x fewer) vs a well-trained "
     "MLP (target not met; SVD at equal params -1.3); beats SVD only at tiny parameter budgets, never at equal "
     "MACs; closed-form fit 1-10 s",
     "SNNK_RESULTS.md"),
    ("GBNN head vs same-width Adam head", "python bench/boost.py",
     "breast cancer 98.07 vs 98.07, wine 99.44 vs 98.33, digits 97.28 vs 97.56, MNIST-1D features 96.47 vs "
     "96.40 (10 / 3 seeds); half the stages loses at most 0.44 points", "BOOST_RESULTS.md"),
    ("INT8 twins vs FP32, demo family, ONNX Runtime CPU", "python bench/quantize.py",
     "at most 0.1 points lost; batch 32: 1.55x / 3.66x / 4.03x / 4.81x faster (w0.25..w1.00); batch 1: w0.25 "
     "0.93x (not faster)", "QUANTIZE_RESULTS.md"),
    ("slimkit serve vs KServe 0.21, batch 1; SLO control", "python bench/serve.py",
     "3.5x KServe's throughput at its peak, >= 1.9x at equal p99 everywhere (1.9x-4.0x over 6 runs); "
     "0.13-0.33 ms p50 over the in-process Engine; SLO mode 100% within the SLO in 4 of 4 runs, at the best "
     "fixed variant's effective accuracy (98.80%) in the 3 quiet ones, 0.001 points below with a CPU hog",
     "SERVE_RESULTS.md"),
    ("N2N vs uniform, Torch-Pruning, random search (3 seeds)", "python bench/n2n.py ...",
     "20x 98.90 vs best baseline 98.40; 30x 97.63 vs uniform 97.97; 50x 95.90 vs random 95.97; 100x 84.87 "
     "vs random 85.07 (targets not met)", "N2N_RESULTS.md"),
]
