"""The sparse RNN rows (issue 4): accuracy versus sparsity for the zoo GRU and LSTM on MNIST-1D as a
sequence, one-shot versus gradual ``compress.sparse_rnn`` versus ``torch.nn.utils.prune`` global
magnitude pruning with the same fine-tuning budget; structured (half the hidden units) variants; ONNX
file sizes; onnxruntime CPU latency of structured and unstructured variants against the dense model.
"""

from __future__ import annotations

import copy
import json
import tempfile
import time
from pathlib import Path

import torch
from torch.nn.utils import prune

from bench.core import Context, Result, Row
from bench.sparse_rnn.report import targets
from bench.sparse_rnn.speed import file_sizes, latency_ratios
from slimkit.compress import data, evaluate, fit, zoo
from slimkit.compress.sparse_rnn import sparse_rnn
from slimkit.compress.sparse_rnn.masks import recurrent_weights, sparsity_of

__all__ = ["SPARSITIES", "FT", "measure"]

SPARSITIES = (0.5, 0.8, 0.9)
FT = {"lr": 2e-3, "weight_decay": 1e-4}  # fine-tuning optimiser of every method (AdamW, cosine decay)


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


def run_cell(cell: str, splits, p: dict, log) -> tuple[dict, dict]:
    """Every figure of one cell type; returns (results, modules to export)."""
    res: dict = {"cell": cell}
    torch.manual_seed(p["seed"])
    dense = zoo.build(cell)
    recipe = dict(zoo.RECIPES[cell])
    if p["dense_epochs"]:
        recipe["epochs"] = p["dense_epochs"]
    t0 = time.perf_counter()
    fit(dense, splits.train, epochs=recipe.pop("epochs"), progress=False, seed=p["seed"], **recipe)
    res["dense"] = {"test": evaluate(dense, splits.test)["accuracy"], "seconds": time.perf_counter() - t0,
                    "hidden_size": dense.rnn.hidden_size}
    log(f"{cell} dense test {res['dense']['test']:.4f} ({res['dense']['seconds']:.0f} s)")
    modules = {"dense": dense}
    for schedule in ("oneshot", "gradual"):
        t0 = time.perf_counter()
        fam = sparse_rnn(dense, train=splits.train, val=splits.val, sparsities=SPARSITIES, schedule=schedule,
                         epochs=p["epochs"], progress=False, seed=p["seed"], **FT)
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
        res["torch_prune"][f"s{s:.2f}"] = torch_prune_baseline(dense, splits, s, p["epochs"], p["seed"])
    log(f"{cell} torch prune: " + ", ".join(f"{n} {r['test']:.4f}" for n, r in res["torch_prune"].items()))
    res["graph"] = {}
    for kind in ("watts_strogatz", "barabasi_albert"):
        fam = sparse_rnn(dense, train=splits.train, val=splits.val, sparsities=(0.8, 0.9), graph=kind,
                         epochs=p["epochs"], progress=False, seed=p["seed"], **FT)
        res["graph"][kind] = {v.name: {"sparsity": v.metrics["sparsity"], "test": evaluate(v.model, splits.test)["accuracy"],
                                       **{k.removeprefix("graph_"): v.metrics[k] for k in v.metrics if k.startswith("graph_")}}
                              for v in fam}
        log(f"{cell} graph {kind}: " + ", ".join(f"{n} {r['test']:.4f}" for n, r in res["graph"][kind].items()))
    t0 = time.perf_counter()
    fam = sparse_rnn(dense, train=splits.train, val=splits.val, sparsities=(0.5,), structured=True,
                     epochs=p["epochs"], progress=False, seed=p["seed"], **FT)
    v = fam["u0.50"]
    res["structured"] = {"u0.50": {"hidden_size": v.model.rnn.hidden_size, "val": v.metrics["accuracy"],
                                   "test": evaluate(v.model, splits.test)["accuracy"], "params": v.params,
                                   "macs": v.macs, "seconds": time.perf_counter() - t0}}
    res["dense"]["params"], res["dense"]["macs"] = fam.source["params"], fam.source["macs"]
    modules["u0.50"] = v.model
    log(f"{cell} structured u0.50 (hidden {v.model.rnn.hidden_size}) test {res['structured']['u0.50']['test']:.4f}")
    return res, modules


def measure(row: Row, ctx: Context) -> Result:
    p, log = dict(row.params), ctx.log
    t_start = time.perf_counter()
    splits = data.mnist1d(num_samples=p["samples"], layout="sequence", seed=p["seed"])
    doc: dict = {"setup": {"data": f"MNIST-1D, {p['samples']} samples, layout='sequence' (B, 40, 1), 80/10/10",
                           "models": "zoo.build('gru'|'lstm'): hidden 128, 1 layer, head on the last step",
                           "dense_training": "fit() with zoo.RECIPES (GRU 10 epochs lr 1e-2, LSTM 15 epochs)"
                           if not p["dense_epochs"] else f"fit() {p['dense_epochs']} epochs",
                           "fine_tuning": f"{p['epochs']} epochs per variant, AdamW lr {FT['lr']}, wd "
                                          f"{FT['weight_decay']}, cosine decay, from the dense model; the same "
                                          "for torch.nn.utils.prune",
                           "threads": "torch.set_num_threads(1); onnxruntime 1 intra-op thread",
                           "seed": p["seed"], "quick": row.quick, "command": ctx.command},
                 "cells": {}}
    ms = []
    with tempfile.TemporaryDirectory(prefix="sparse-rnn-bench-") as tmp:
        for cell in p["cells"]:
            res, modules = run_cell(cell, splits, p, log)
            x = splits.example_input
            res["sizes"] = file_sizes(modules, x, Path(tmp) / cell)
            log(f"{cell} sizes: " + ", ".join(f"{n} {s['onnx_bytes']}/{s['zip_bytes']}" for n, s in res["sizes"].items()))
            res["latency"], m = latency_ratios(Path(tmp) / cell, ("dense", "u0.50", "s0.90"), timing=row.timing,
                                               group=cell)
            for one in m:
                one.extra["test_accuracy"] = _accuracy(res, one.name)
            ms += m
            log(f"{cell} latency: " + json.dumps({n: {b: round(r['speedup'], 2) for b, r in d.items()}
                                                    for n, d in res["latency"].items() if n != "dense"}))
            doc["cells"][cell] = res
    doc["targets"] = targets(doc["cells"])
    doc["seconds"] = time.perf_counter() - t_start
    return Result(doc=doc, measurements=ms)


def _accuracy(res: dict, name: str) -> float:
    """Test accuracy of the exported model ``name`` (dense, u0.50 or a gradual sparsity level)."""
    if name == "dense":
        return res["dense"]["test"]
    return res["structured"][name]["test"] if name in res["structured"] else res["gradual"][name]["test"]
