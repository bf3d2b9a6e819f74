"""``snnk/RESULTS.md`` from the SNNK rows' results.json (tables per part, the issue's targets, latency)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["markdown", "summarise"]

METHODS = ("snnk-cf-p1", "snnk-cf", "snnk-distill", "snnk-cf+kd-p1", "snnk-cf+kd", "diag-learned-proj", "svd-params",
           "svd-macs", "dense-kd")


def _table(head: list[str], rows: list[list]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + \
        ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]


def summarise(part: dict) -> dict:
    """``{(method, m): {...means over seeds...}}`` of one part's rows."""
    out = {}
    for method in METHODS:
        for m in sorted({r["m"] for r in part["rows"]}):
            rows = [r for r in part["rows"] if r["method"] == method and r["m"] == m and r.get("feasible", True)]
            if not rows:
                continue
            acc = np.array([r["test_accuracy"] for r in rows])
            out[(method, m)] = {
                "acc": float(acc.mean()), "acc_std": float(acc.std()), "n": len(rows),
                "block_params": rows[0]["block_params"], "proj": rows[0].get("block_projection_floats", 0),
                "macs": rows[0]["macs"], "rank": rows[0].get("rank"), "fit_s": float(np.mean([r["fit_seconds"] for r in rows])),
            }
    return out


def _part(name: str, part: dict) -> list[str]:
    t = part["teacher"]
    orig = part["original_block_params"]
    lat = part["latency"]
    lines = [f"## {name}", "",
             f"Teacher: {t['params']:,} params, {t['macs']:,} MACs, test accuracy **{t['test_accuracy']:.4f}** "
             f"(trained {t['epochs']} epochs at lr {t['lr']:g}). Replaced blocks: {', '.join(f'`{b}`' for b in part['targets'])} "
             f"({orig:,} params).", ""]
    s = summarise(part)
    rows = []
    for (method, m), r in sorted(s.items(), key=lambda kv: (kv[0][1], METHODS.index(kv[0][0]))):
        la = lat.get("teacher" if method == "dense-kd" else f"snnk m{m}" if method.startswith(("snnk", "diag"))
                     else f"{method} m{m}", {})
        rank = f" (rank {r['rank']})" if r["rank"] is not None else ""
        rows.append([m or "-", method + rank, f"{r['block_params']:,}", f"{orig / r['block_params']:.1f}x",
                     f"{r['proj']:,}", f"{r['macs']:,}",
                     f"{r['acc']:.4f} ± {r['acc_std']:.4f} (n={r['n']})", f"{100 * (r['acc'] - t['test_accuracy']):+.1f}",
                     f"{r['fit_s']:.2f}", f"{la.get('batch1_p50_ms', float('nan')):.4f}",
                     f"{la.get('batch256_p50_ms', float('nan')):.3f}"])
    lt = lat.get("teacher", {})
    rows.append(["-", "teacher", f"{orig:,}", "1.0x", "0", f"{t['macs']:,}", f"{t['test_accuracy']:.4f}", "0",
                 "-", f"{lt.get('batch1_p50_ms', float('nan')):.4f}", f"{lt.get('batch256_p50_ms', float('nan')):.3f}"])
    lines += _table(["m", "method", "block params", "fewer", "projection floats", "model MACs", "test acc",
                     "Δ pts", "fit + train s", "ORT ms b1", "ORT ms b256"], rows)
    infeasible = sorted({(r["method"], r["m"]) for r in part["rows"] if r.get("feasible") is False})
    if infeasible:
        lines += ["", "No rank >= 1 fits the budget for: " + ", ".join(f"{a} at m={b}" for a, b in infeasible)
                  + " (the biases alone exceed it)."]
    return lines + [""]


def claims(doc: dict) -> list[str]:
    lines = ["## Targets", ""]
    for key in ("mlp", "mlp-strong"):
        lines += _mlp_claims(key, doc.get(key))
    lines += _other_claims(doc)
    return lines + [""]


def _mlp_claims(key: str, mlp: dict | None) -> list[str]:
    lines = []
    if mlp:
        t = mlp["teacher"]["test_accuracy"]
        orig = mlp["original_block_params"]
        s = summarise(mlp)
        dense = s.get(("dense-kd", 0))
        for method in ("snnk-distill", "snnk-cf+kd", "snnk-cf"):
            ok = [(m, r) for (meth, m), r in s.items() if meth == method and orig / r["block_params"] >= 5
                  and r["acc"] >= t - 0.01]
            if ok:
                m, r = max(ok, key=lambda kv: orig / kv[1]["block_params"])
                lines.append(f"- {key}, {method}: **met** — m={m}: {orig / r['block_params']:.0f}x fewer block params, "
                             f"accuracy {r['acc']:.4f} vs teacher {t:.4f} ({100 * (r['acc'] - t):+.1f} pts, mean of "
                             f"{r['n']} seeds)" + ("" if dense is None else
                             f"; but the dense model given the same distillation reaches {dense['acc']:.4f} "
                             f"({100 * (r['acc'] - dense['acc']):+.1f} pts against that)") + ".")
            else:
                best = max((r["acc"], m) for (meth, m), r in s.items() if meth == method)
                lines.append(f"- {key}, {method}: **not met** (no m has >= 5x fewer block params within 1 pt of the "
                             f"teacher's {t:.4f}; best: {best[0]:.4f} at m={best[1]}).")
    return lines


def _other_claims(doc: dict) -> list[str]:
    lines = []
    for name in ("mlp", "mlp-strong", "transformer"):
        part = doc.get(name)
        if not part:
            continue
        s = summarise(part)
        for method in ("snnk-distill", "snnk-cf+kd"):
            wins = []
            for (meth, m), r in s.items():
                if meth != method:
                    continue
                for base in ("svd-params", "svd-macs"):
                    b = s.get((base, m))
                    verdict = "no rank fits" if b is None else ("SNNK better" if r["acc"] > b["acc"] else "SVD better")
                    wins.append(f"m={m} vs {base}: {verdict}" + ("" if b is None else
                                f" ({r['acc']:.4f} vs {b['acc']:.4f})"))
            lines.append(f"- {name}, {method} against SVD: " + "; ".join(wins) + ".")
        cf = [r["closed_form_seconds"] for r in part["rows"] if r["method"] == "snnk-cf" and r.get("closed_form_seconds")]
        if cf:  # rows of older JSON files lack the field
            lines.append(f"- {name}, closed-form fit time: max {max(cf):.2f} s per variant, calibration forward "
                         "passes included (no backpropagation).")
    return lines


def markdown(doc: dict, *, json_path: Path) -> str:
    setup = doc.get("setup", {})
    lines = ["# SNNK benchmark", "",
             f"Produced by `.venv/bin/python {setup.get('command', 'bench/snnk.py')}` "
             f"(torch threads {setup.get('torch_threads')}); raw figures in `{json_path.name}`. The rows run "
             "the parts `mlp`, `mlp-strong`, `transformer`, `kinds`, each merging its part into the JSON as it "
             "finishes (`python -m bench snnk --row mlp` runs one).", "",
             "Methods: `snnk-cf` closed-form ridge fit (no backprop), `snnk-distill` init from trained weights "
             "then distillation, `snnk-cf+kd` closed form then the same distillation (both closed forms select the m "
             "random features from a seeded pool of 2m, `pool=2`, the default; `-p1`: the same with `pool=1`, "
             "no selection), `diag-learned-proj` (not SNNK, a diagnostic: the `snnk-cf` student with its random "
             "projection trained too, same distillation; its block params include the projection), "
             "`svd-params` / `svd-macs` "
             "truncated-SVD factorisation of the same Linears at equal trainable block params / equal MACs, "
             "fine-tuned with the same distillation. \"projection floats\" are SNNK's fixed random matrices "
             "(buffers, regenerable from the seed, not trained, but stored in the ONNX file and multiplied at "
             "run time: their cost is in the MACs). Latency: onnxruntime CPU, 1 intra-op thread, p50 over "
             "interleaved rounds, shared 2-core machine.", ""]
    lines += claims(doc)
    titles = {"mlp": "MLP on MNIST-1D (zoo-recipe teacher)", "mlp-strong": "MLP on MNIST-1D (well-trained teacher)",
              "transformer": "Transformer FFNs on MNIST-1D"}
    for name, title in titles.items():
        if name in doc:
            lines += _part(title, doc[name])
    if "kinds" in doc:
        lines += ["## Feature kinds (MLP head block, closed form)", ""]
        lines += _table(["kind", "m", "test acc", "relative MSE to the block's outputs", "fit s"],
                        [[k["kind"], k["m"], f"{k['test_accuracy']:.4f}", f"{k['relative_mse']:.4f}",
                          f"{k['fit_seconds']:.2f}"] for k in doc["kinds"]])
        lines.append("")
    if "wall_s" in doc:
        lines += ["Wall time per part (s): " + ", ".join(f"{k} {v:.0f}" for k, v in doc["wall_s"].items()), ""]
    return "\n".join(lines)
