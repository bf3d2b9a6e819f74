"""The sparse RNN report (``sparse_rnn/RESULTS.md``) of one results file, and its targets."""

from __future__ import annotations

__all__ = ["targets", "render"]


def targets(cells: dict) -> dict:
    """Per cell: each of issue 4's targets, met or not, with the figures it was judged on."""
    out = {}
    for cell, r in cells.items():
        dense = r["dense"]["test"]
        best80 = max(r["oneshot"]["s0.80"]["test"], r["gradual"]["s0.80"]["test"])
        u = r["structured"]["u0.50"]
        speed = r.get("latency", {}).get("u0.50", {}).get("32", {}).get("speedup")
        out[cell] = {
            "s0.80_within_1pt": {"met": dense - r["gradual"]["s0.80"]["test"] <= 0.01,
                                 "gradual": r["gradual"]["s0.80"]["test"], "best_of_schedules": best80,
                                 "dense": dense},
            "structured_half_1.8x_b32": {"met": bool(speed is not None and speed >= 1.8), "speedup": speed},
            "structured_half_within_2pt": {"met": dense - u["test"] <= 0.02, "test": u["test"], "dense": dense},
            "ge_torch_prune": {s: {"met": max(r["gradual"][s]["test"], r["oneshot"][s]["test"])
                                   >= r["torch_prune"][s]["test"],
                                   "gradual_met": r["gradual"][s]["test"] >= r["torch_prune"][s]["test"],
                                   "gradual": r["gradual"][s]["test"], "oneshot": r["oneshot"][s]["test"],
                                   "torch_prune": r["torch_prune"][s]["test"]}
                               for s in r["torch_prune"]},
        }
    return out


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _yes(met: bool) -> str:
    return "**met**" if met else "**not met**"


def render(doc: dict, *, json_name: str = "results.json") -> str:
    """The Markdown report of one results file (its targets recomputed from its figures)."""
    s = doc["setup"]
    lines = ["# Sparse RNN pruning: results", "",
             f"Produced by `{s.get('command', '.venv/bin/python bench/sparse_rnn.py')}` (figures in "
             f"`bench/sparse_rnn/{json_name}`)"
             + (" -- QUICK SMOKE RUN, not the reported figures" if s.get("quick") else "") + ".", "",
             f"- Data: {s['data']}; accuracies are on the test split.",
             f"- Models: {s['models']}; dense: {s['dense_training']}.",
             f"- Fine-tuning: {s['fine_tuning']}.",
             f"- {s['threads']}; seed {s['seed']}; total run {doc.get('seconds', 0) / 60:.1f} min.", ""]
    for cell, r in doc["cells"].items():
        d = r["dense"]
        lines += [f"## {cell.upper()} (dense test accuracy {_pct(d['test'])} %, hidden {d['hidden_size']}, "
                  f"{d.get('params', 0):,} params)", "",
                  "| sparsity | one-shot | gradual (cubic) | torch.nn.utils.prune global | measured sparsity (gradual) |",
                  "| --- | --- | --- | --- | --- |"]
        for name in r["gradual"]:
            lines.append(f"| {name[1:]} | {_pct(r['oneshot'][name]['test'])} | {_pct(r['gradual'][name]['test'])} | "
                         f"{_pct(r['torch_prune'][name]['test'])} | {r['gradual'][name]['sparsity']:.4f} |")
        if r.get("graph"):
            lines += ["", "Random-graph masks (`graph=`, one-shot, same fine-tuning; graph properties are means over the "
                      "variant's graphs, one per recurrent matrix; unit-to-unit matrices only, so the first layer's "
                      "input weights stay dense):", "",
                      "| graph | requested | measured sparsity | test accuracy | avg degree | clustering | path length |",
                      "| --- | --- | --- | --- | --- | --- | --- |"]
            for kind, per in r["graph"].items():
                for name, g in per.items():
                    lines.append(f"| {kind} | {name[1:]} | {g['sparsity']:.4f} | {_pct(g['test'])} | "
                                 f"{g['avg_degree']:.1f} | {g['clustering']:.3f} | {g['path_length']:.2f} |")
        u = r["structured"]["u0.50"]
        lines += ["", f"Structured, half the hidden units removed (`structured=True`, u0.50): hidden "
                  f"{u['hidden_size']}, {u['params']:,} params, {u['macs']:,} MACs (dense {d.get('macs', 0):,}), "
                  f"test accuracy {_pct(u['test'])} %.", "",
                  "| model | ONNX bytes | zipped bytes | zipped / dense ONNX |", "| --- | --- | --- | --- |"]
        dense_bytes = r["sizes"]["dense"]["onnx_bytes"]
        for name, z in r["sizes"].items():
            lines.append(f"| {name} | {z['onnx_bytes']:,} | {z['zip_bytes']:,} | {z['zip_bytes'] / dense_bytes:.2f} |")
        lines += ["", "onnxruntime CPU, 1 thread, input length 40; speedup = dense time / model time, median "
                  "over interleaved rounds (interquartile range):", "",
                  "| model | batch | median ms | speedup vs dense |", "| --- | --- | --- | --- |"]
        for name, per in r["latency"].items():
            for b, rec in per.items():
                sp = (f"{rec['speedup']:.2f}x ({rec['q1']:.2f}-{rec['q3']:.2f})" if "speedup" in rec else "1 (baseline)")
                lines.append(f"| {name} | {b} | {rec['median_ms']:.3f} | {sp} |")
        lines.append("")
    lines += ["## Targets", ""]
    for cell, t in targets(doc["cells"]).items():
        a = t["s0.80_within_1pt"]
        lines.append(f"- {cell.upper()} 80 % unstructured (gradual) within 1 point of dense: {_yes(a['met'])} "
                     f"({_pct(a['gradual'])} vs {_pct(a['dense'])}; best schedule {_pct(a['best_of_schedules'])})")
        b = t["structured_half_1.8x_b32"]
        sp = f"{b['speedup']:.2f}x" if b["speedup"] is not None else "not measured"
        lines.append(f"- {cell.upper()} half the units >= 1.8x faster at batch 32: {_yes(b['met'])} ({sp})")
        c = t["structured_half_within_2pt"]
        lines.append(f"- {cell.upper()} half the units within 2 points: {_yes(c['met'])} "
                     f"({_pct(c['test'])} vs {_pct(c['dense'])})")
        for s, e in t["ge_torch_prune"].items():
            lines.append(f"- {cell.upper()} {s} sparse_rnn >= torch.nn.utils.prune: {_yes(e['met'])} "
                         f"(one-shot {_pct(e['oneshot'])}, gradual {_pct(e['gradual'])} "
                         f"[{'>=' if e['gradual_met'] else '<'} baseline], torch prune {_pct(e['torch_prune'])})")
    lines += ["", "## Notes", "",
              "- Unstructured sparsity shrinks storage (zipped files) but not latency: onnxruntime runs the dense "
              "GRU/LSTM kernels with the zeros in place (and densifies sparse initializers at load). Only "
              "structured removal makes the model faster.",
              "- One-shot global magnitude pruning is the algorithm `torch.nn.utils.prune.global_unstructured` "
              "(L1Unstructured) implements; with the same data order and optimiser both give the same accuracy, "
              "as they should. The gain of `sparse_rnn` over that baseline is the gradual (cubic) schedule, which "
              "matters at high sparsity; where gradual is a few tenths below it at low sparsity, the difference "
              "is within the noise of the test split (1,000 samples: one sample is 0.1 point, the binomial "
              "standard error at 97 % is about 0.5 point). One seed.",
              "- Random-graph masks keep connections by graph structure, not by weight magnitude, so they throw "
              "away much of what the dense model learned; the same fine-tuning budget does not recover it. The "
              "thesis trained its graph-structured networks from scratch: use `graph=` to study structure "
              "(the properties are recorded per variant), magnitude pruning to compress a trained model.",
              "- The machine is shared; a wide interquartile range on a latency row means another process took "
              "the core during some rounds.", ""]
    return "\n".join(lines)
