"""Sparse RNN benchmark (issue 4): accuracy versus sparsity for the zoo GRU and LSTM on MNIST-1D as a
sequence, one-shot versus gradual ``compress.sparse_rnn`` versus ``torch.nn.utils.prune`` global
magnitude pruning with the same fine-tuning budget; structured (half the hidden units) variants; ONNX
file sizes; onnxruntime CPU latency of structured and unstructured variants against the dense model.

Usage (from the repository root):

    .venv/bin/python bench/sparse_rnn.py            # full: ~11-12 min on the shared 2-core box
    .venv/bin/python bench/sparse_rnn.py --quick    # smoke: 2,000 samples, 1 epoch -> bench/out/
    .venv/bin/python bench/sparse_rnn.py --render bench/sparse_rnn_results.json   # targets + markdown, no runs

Writes ``bench/sparse_rnn_results.json`` and ``bench/SPARSE_RNN_RESULTS.md`` (``--quick``: under bench/out).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

torch.set_num_threads(1)

from _bench import atomic_write  # noqa: E402
from _sparse_rnn_report import render  # noqa: E402
from _sparse_rnn_speed import file_sizes, latency_ratios  # noqa: E402
from torch.nn.utils import prune  # noqa: E402

from slimkit.compress import data, evaluate, fit, zoo  # noqa: E402
from slimkit.compress.sparse_rnn import sparse_rnn  # noqa: E402
from slimkit.compress.sparse_rnn.masks import recurrent_weights, sparsity_of  # noqa: E402

ROOT = Path(__file__).resolve().parent
SPARSITIES = (0.5, 0.8, 0.9)
FT = {"lr": 2e-3, "weight_decay": 1e-4}  # fine-tuning optimiser of every method (AdamW, cosine decay)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def torch_prune_baseline(dense, splits, sparsity: float, epochs: int, seed: int) -> dict:
    """Global L1 magnitude pruning of the same recurrent weights with ``torch.nn.utils.prune``, then ``fit``
    for the same epochs with the same optimiser and schedule (masks held by prune's forward pre-hook)."""
    m = copy.deepcopy(dense)
    targets = [(m.get_submodule(w.module), w.attr) for w in recurrent_weights(m)]
    prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=sparsity)
    t0 = time.perf_counter()
    if epochs:
        fit(m, splits.train, epochs=epochs, schedule="cosine", progress=False, seed=seed, **FT)
    secs = time.perf_counter() - t0
    for mod, attr in targets:
        prune.remove(mod, attr)
    return {"sparsity": sparsity_of(m, recurrent_weights(m)), "test": evaluate(m, splits.test)["accuracy"],
            "seconds": secs}


def run_cell(cell: str, splits, args) -> tuple[dict, dict]:
    """Every figure of one cell type; returns (results, modules to export)."""
    res: dict = {"cell": cell}
    torch.manual_seed(args.seed)
    dense = zoo.build(cell)
    recipe = dict(zoo.RECIPES[cell])
    if args.dense_epochs:
        recipe["epochs"] = args.dense_epochs
    t0 = time.perf_counter()
    fit(dense, splits.train, epochs=recipe.pop("epochs"), progress=False, seed=args.seed, **recipe)
    res["dense"] = {"test": evaluate(dense, splits.test)["accuracy"], "seconds": time.perf_counter() - t0,
                    "hidden_size": dense.rnn.hidden_size}
    log(f"{cell} dense test {res['dense']['test']:.4f} ({res['dense']['seconds']:.0f} s)")
    modules = {"dense": dense}
    for schedule in ("oneshot", "gradual"):
        t0 = time.perf_counter()
        fam = sparse_rnn(dense, train=splits.train, val=splits.val, sparsities=SPARSITIES, schedule=schedule,
                         epochs=args.epochs, progress=False, seed=args.seed, **FT)
        secs = time.perf_counter() - t0
        res[schedule] = {}
        for v in fam:
            res[schedule][v.name] = {"sparsity": v.metrics["sparsity"], "val": v.metrics["accuracy"],
                                     "test": evaluate(v.model, splits.test)["accuracy"],
                                     "seconds": secs / len(fam),
                                     **{k: v.metrics[k] for k in ("nonzero_params", "dense_bytes",
                                                                  "sparse_bytes", "compressed_bytes")}}
            if schedule == "gradual":
                modules[v.name] = v.model
        log(f"{cell} {schedule}: " + ", ".join(f"{n} {r['test']:.4f}" for n, r in res[schedule].items()))
    res["torch_prune"] = {}
    for s in SPARSITIES:
        res["torch_prune"][f"s{s:.2f}"] = torch_prune_baseline(dense, splits, s, args.epochs, args.seed)
    log(f"{cell} torch prune: " + ", ".join(f"{n} {r['test']:.4f}" for n, r in res["torch_prune"].items()))
    res["graph"] = {}
    for kind in ("watts_strogatz", "barabasi_albert"):
        fam = sparse_rnn(dense, train=splits.train, val=splits.val, sparsities=(0.8, 0.9), graph=kind,
                         epochs=args.epochs, progress=False, seed=args.seed, **FT)
        res["graph"][kind] = {v.name: {"sparsity": v.metrics["sparsity"], "test": evaluate(v.model, splits.test)["accuracy"],
                                       **{k.removeprefix("graph_"): v.metrics[k] for k in v.metrics if k.startswith("graph_")}}
                              for v in fam}
        log(f"{cell} graph {kind}: " + ", ".join(f"{n} {r['test']:.4f}" for n, r in res["graph"][kind].items()))
    t0 = time.perf_counter()
    fam = sparse_rnn(dense, train=splits.train, val=splits.val, sparsities=(0.5,), structured=True,
                     epochs=args.epochs, progress=False, seed=args.seed, **FT)
    v = fam["u0.50"]
    res["structured"] = {"u0.50": {"hidden_size": v.model.rnn.hidden_size, "val": v.metrics["accuracy"],
                                   "test": evaluate(v.model, splits.test)["accuracy"], "params": v.params,
                                   "macs": v.macs, "seconds": time.perf_counter() - t0}}
    res["dense"]["params"], res["dense"]["macs"] = fam.source["params"], fam.source["macs"]
    modules["u0.50"] = v.model
    log(f"{cell} structured u0.50 (hidden {v.model.rnn.hidden_size}) test {res['structured']['u0.50']['test']:.4f}")
    return res, modules


def targets(cells: dict) -> dict:
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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--samples", type=int, default=10_000)
    p.add_argument("--epochs", type=int, default=5, help="fine-tuning epochs of every pruned model")
    p.add_argument("--dense-epochs", type=int, default=0, help="0: zoo.RECIPES")
    p.add_argument("--cells", nargs="+", default=["gru", "lstm"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rounds", type=int, default=30, help="interleaved latency rounds")
    p.add_argument("--out-dir", type=Path, default=None, help="where to write (default bench/, or bench/out/ with --quick)")
    p.add_argument("--render", type=Path, help="only recompute the targets and rewrite the markdown from this JSON")
    args = p.parse_args()
    if args.render:
        doc = json.loads(args.render.read_text())
        doc["targets"] = targets(doc["cells"])
        args.render.write_text(json.dumps(doc, indent=2))
        (args.render.parent / "SPARSE_RNN_RESULTS.md").write_text(render(doc))
        return 0
    if args.quick:
        args.samples, args.epochs, args.dense_epochs, args.rounds = 2000, 1, 2, 5
    out_dir = args.out_dir or (ROOT / "out" if args.quick else ROOT)
    t_start = time.perf_counter()
    splits = data.mnist1d(num_samples=args.samples, layout="sequence", seed=args.seed)
    doc: dict = {"setup": {"data": f"MNIST-1D, {args.samples} samples, layout='sequence' (B, 40, 1), 80/10/10",
                           "models": "zoo.build('gru'|'lstm'): hidden 128, 1 layer, head on the last step",
                           "dense_training": "fit() with zoo.RECIPES (GRU 10 epochs lr 1e-2, LSTM 15 epochs)"
                           if not args.dense_epochs else f"fit() {args.dense_epochs} epochs",
                           "fine_tuning": f"{args.epochs} epochs per variant, AdamW lr {FT['lr']}, wd "
                                          f"{FT['weight_decay']}, cosine decay, from the dense model; the same "
                                          "for torch.nn.utils.prune",
                           "threads": "torch.set_num_threads(1); onnxruntime 1 intra-op thread",
                           "seed": args.seed, "quick": args.quick},
                 "cells": {}}
    with tempfile.TemporaryDirectory(prefix="sparse-rnn-bench-") as tmp:
        for cell in args.cells:
            res, modules = run_cell(cell, splits, args)
            x = splits.example_input
            res["sizes"] = file_sizes(modules, x, Path(tmp) / cell)
            log(f"{cell} sizes: " + ", ".join(f"{n} {s['onnx_bytes']}/{s['zip_bytes']}" for n, s in res["sizes"].items()))
            res["latency"] = latency_ratios(Path(tmp) / cell, ("dense", "u0.50", "s0.90"), rounds=args.rounds)
            log(f"{cell} latency: " + json.dumps({n: {b: round(r['speedup'], 2) for b, r in d.items()}
                                                    for n, d in res["latency"].items() if n != "dense"}))
            doc["cells"][cell] = res
    doc["targets"] = targets(doc["cells"])
    doc["seconds"] = time.perf_counter() - t_start
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(out_dir / "sparse_rnn_results.json", json.dumps(doc, indent=2))
    (out_dir / "SPARSE_RNN_RESULTS.md").write_text(render(doc))
    log(f"done in {doc['seconds']:.0f} s -> {out_dir / 'sparse_rnn_results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
