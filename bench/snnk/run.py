"""The SNNK rows (issue 5): SNNK blocks versus a truncated-SVD low-rank factorisation of the same blocks.

Parts, all on MNIST-1D (10,000 samples, 80/10/10, seed 0):

* ``mlp``: the zoo MLP (40 -> 256 -> 256 -> 10, ``layout="flat"``) trained with the zoo recipe; SNNK's
  default target, the classifier-head block ``body.2..head`` (Linear 256x256, ReLU, Linear 256x10).
* ``mlp-strong``: the same with a teacher trained to ~0.80 (30 epochs at lr 1e-2), because the zoo
  recipe's teacher is so under-trained that extra distillation alone lifts it by ~6 points.
* ``transformer``: the zoo Transformer (d_model 64, FFN 128, 2 layers); targets: both FFN blocks.

Per m: parameters (of the replaced blocks and in total), random-projection floats, MACs, test accuracy,
onnxruntime latency (1 thread, batch 1 and 256, models interleaved), and the fit time. Methods:
``snnk-distill`` (init from weights + distillation), ``snnk-cf`` (closed form, no backprop),
``snnk-cf+kd`` (closed form then the same distillation; ``-p1``: the same without selecting the random
features from a pool of ``2m``), ``dense-kd`` (the original model itself put
through the same distillation: what the extra training alone buys), and the SVD baselines at equal *trainable
parameters* (``svd-params``) and at equal *MACs* (``svd-macs``), fine-tuned with the same distillation.
``mlp-strong`` adds a diagnostic that is *not* SNNK, ``diag-learned-proj``: the ``snnk-cf`` student with its
random projection made trainable, distilled the same way (what a learned instead of a random layer of
the same width would give; its block params count the projection). ``kinds``: closed-form fits of the
MLP head block with each feature kind.

Rows (bench/snnk/rows.py): one per part, each merging into ``results.json``; ``python -m bench snnk``.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import torch

from bench.core import Context, Measurement, Result, Row
from bench.snnk.baselines import (
    latencies,
    learned_projection,
    low_rank,
    lowrank_block_params,
    rank_for,
    snnk_block_cost,
)
from slimkit.compress import count_macs, count_params, data, evaluate, fit, zoo
from slimkit.compress.snnk import select_targets, snnk

__all__ = ["SNNK_RUNS", "measure"]

# method -> (snnk mode, fine-tuning epochs (None: the part's cfg["epochs"]), extra options);
# -p1: without feature selection
SNNK_RUNS = {"snnk-cf": ("closed_form", 0, {}), "snnk-cf-p1": ("closed_form", 0, {"pool": 1}),
             "snnk-distill": ("distill", None, {}), "snnk-cf+kd": ("closed_form", None, {}),
             "snnk-cf+kd-p1": ("closed_form", None, {"pool": 1})}


def teacher(name: str, splits, epochs: int, lr: float, samples: int, cache: Path) -> tuple[torch.nn.Module, dict]:
    """The zoo model trained once with ``fit`` (seed 0), cached under ``cache``."""
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"{name}-{samples}-{epochs}-{lr:g}.pt"
    torch.manual_seed(0)
    model = zoo.build(name)
    wall = None
    if path.is_file():
        model.load_state_dict(torch.load(path))
    else:
        t0 = time.perf_counter()
        fit(model, splits.train, epochs=epochs, lr=lr, progress=False, seed=0)
        wall = time.perf_counter() - t0
        torch.save(model.state_dict(), path)
    model.eval()
    return model, {"params": count_params(model), "macs": count_macs(model, splits.example_input),
                   "test_accuracy": evaluate(model, splits.test)["accuracy"],
                   "val_accuracy": evaluate(model, splits.val)["accuracy"], "train_wall_s": wall,
                   "epochs": epochs, "lr": lr}


def run_part(part: str, cfg: dict, seeds: list[int], samples: int, ctx: Context, timing) -> tuple[dict, list]:
    name, log = cfg.get("zoo", part), ctx.log
    splits = data.mnist1d(layout="flat" if name == "mlp" else "sequence", num_samples=samples, seed=0)
    model, info = teacher(name, splits, cfg["teacher_epochs"], cfg.get("teacher_lr", zoo.RECIPES[name]["lr"]), samples,
                          ctx.scratch)
    x = splits.example_input
    blocks = select_targets(model, x)
    original = sum(p.numel() for b in blocks for n in b.linears for p in model.get_submodule(n).parameters())
    log(f"[{part}] teacher test acc {info['test_accuracy']:.4f}; targets {[b.name for b in blocks]} "
        f"({original:,} params)")
    rows, models = [], {"teacher": model}
    common = {"lr": cfg["lr"], "weight_decay": 1e-4}

    def kd(student: torch.nn.Module, seed: int) -> dict:
        """The same fine-tuning for every non-SNNK row: ``cfg['epochs']`` of distillation from the teacher."""
        t0 = time.perf_counter()
        fit(student, splits.train, epochs=cfg["epochs"], teacher=model, progress=False, seed=seed, **common)
        return {"fit_seconds": time.perf_counter() - t0, "params": count_params(student),
                "test_accuracy": evaluate(student, splits.test)["accuracy"],
                "val_accuracy": evaluate(student, splits.val)["accuracy"]}

    for seed in cfg.get("seeds", seeds):
        for method, (mode, epochs, pool) in SNNK_RUNS.items():
            epochs = cfg["epochs"] if epochs is None else epochs
            t0 = time.perf_counter()
            fam = snnk(model, train=splits.train, features=cfg["features"], mode=mode, epochs=epochs,
                       progress=False, seed=seed, **pool, **common)
            wall = time.perf_counter() - t0
            for v in fam:
                cost = snnk_block_cost(v.model, blocks, x)
                rows.append({"method": method, "m": v.config["shape"]["m"], "seed": seed, **cost,
                             "params": v.params, "test_accuracy": evaluate(v.model, splits.test)["accuracy"],
                             "val_accuracy": evaluate(v.model, splits.val)["accuracy"],
                             "fit_seconds": v.config["info"]["fit_seconds"] + v.config["info"]["train_seconds"],
                             "closed_form_seconds": v.config["info"]["fit_seconds"] if mode == "closed_form" else None,
                             "family_wall_s": wall})
                if seed == seeds[0] and method == "snnk-cf":  # latency depends on the graph only
                    models[f"snnk m{v.config['shape']['m']}"] = v.model
                log(f"[{part}] {method} m={v.config['shape']['m']} seed={seed}: acc {rows[-1]['test_accuracy']:.4f} "
                    f"block params {cost['block_params']:,} fit {rows[-1]['fit_seconds']:.2f}s")
            if method == "snnk-cf":
                cf_family = fam
        if cfg.get("diagnostic"):  # NOT SNNK: the same student with its random projection trained too
            for v in cf_family:
                student = learned_projection(v.model)
                rows.append({"method": "diag-learned-proj", "m": v.config["shape"]["m"], "seed": seed,
                             **snnk_block_cost(student, blocks, x), "block_projection_floats": 0,
                             **kd(student, seed)})
                log(f"[{part}] diag-learned-proj m={v.config['shape']['m']} seed={seed}: acc {rows[-1]['test_accuracy']:.4f}")
        # the reference for "the same fine-tuning": the dense model itself, distilled with the same recipe
        rows.append({"method": "dense-kd", "m": 0, "seed": seed, "rank": None, "block_params": original,
                     "block_projection_floats": 0, "macs": info["macs"], **kd(copy.deepcopy(model), seed)})
        log(f"[{part}] dense-kd seed={seed}: acc {rows[-1]['test_accuracy']:.4f}")
        for m in cfg["features"]:
            ref = next(r for r in rows if r["method"] == "snnk-cf" and r["m"] == m and r["seed"] == seed)
            tokens = x.shape[1] if x.dim() == 3 else 1
            snnk_block_macs = ref["macs"] - (info["macs"] - _block_macs(model, blocks, x))
            for method, rank in (("svd-params", rank_for(model, blocks, ref["block_params"])),
                                 ("svd-macs", rank_for(model, blocks, snnk_block_macs, macs=True, tokens=tokens))):
                row = {"method": method, "m": m, "seed": seed, "rank": rank, "snnk_block_macs": snnk_block_macs}
                if rank < 1:
                    rows.append({**row, "feasible": False})
                    log(f"[{part}] {method} m={m}: no rank fits")
                    continue
                student = low_rank(model, blocks, rank)
                row.update(feasible=True, **kd(student, seed),
                           block_params=lowrank_block_params(model, blocks, rank), block_projection_floats=0,
                           macs=count_macs(student, x))
                rows.append(row)
                if seed == seeds[0]:
                    models[f"{method} m{m}"] = student
                log(f"[{part}] {method} m={m} rank={rank} seed={seed}: acc {row['test_accuracy']:.4f}")
    log(f"[{part}] latency of {len(models)} models")
    lat, ms = latencies(models, x, timing=timing, group=part)
    return {"teacher": info, "targets": [b.name for b in blocks], "original_block_params": original,
            "rows": rows, "latency": lat, "config": cfg}, ms


def _block_macs(model, blocks, x) -> int:
    """MACs of the original blocks' Linears (per sample: tokens x in x out for sequence inputs)."""
    tokens = x.shape[1] if x.dim() == 3 else 1
    return sum(tokens * model.get_submodule(n).in_features * model.get_submodule(n).out_features
               for b in blocks for n in b.linears)


def run_kinds(m: int, samples: int, teacher_epochs: int, ctx: Context) -> list[dict]:
    """Closed-form fits of the MLP head block with every feature kind (no backprop: seconds)."""
    log = ctx.log
    splits = data.mnist1d(layout="flat", num_samples=samples, seed=0)
    model, _ = teacher("mlp", splits, teacher_epochs, zoo.RECIPES["mlp"]["lr"], samples, ctx.scratch)
    out = []
    for kind in ("relu", "exp", "cos", "sin"):
        fam = snnk(model, train=splits.train, features=m, kind=kind, mode="closed_form", progress=False)
        v = fam.largest
        cf = next(iter(v.config["info"]["closed_form"].values()))
        out.append({"kind": kind, "m": m, "test_accuracy": evaluate(v.model, splits.test)["accuracy"],
                    "relative_mse": cf["train_mse"] / cf["target_var"], "fit_seconds": v.config["info"]["fit_seconds"]})
        log(f"[kinds] {kind}: {out[-1]}")
    return out


def fit_measurements(rows: list[dict], *, group: str) -> list[Measurement]:
    """Fit (and fine-tuning) seconds of each method and m, one sample per seed; accuracies beside them."""
    out = []
    for key in dict.fromkeys((r["method"], r["m"]) for r in rows if r.get("feasible", True)):
        runs = [r for r in rows if (r["method"], r["m"]) == key and r.get("feasible", True)]
        out.append(Measurement(f"{key[0]}-m{key[1]}", group, [r["fit_seconds"] for r in runs],
                               extra={"method": key[0], "m": key[1], "block_params": runs[0]["block_params"],
                                      "test_accuracy": [r["test_accuracy"] for r in runs],
                                      "seeds": [r["seed"] for r in runs]}))
    return out


def measure(row: Row, ctx: Context) -> Result:
    """One part (``row.params["part"]``) merged into this folder's results.json."""
    p = dict(row.params)
    part = p.pop("part")
    doc = ctx.load(row.file) or {}
    t0 = time.perf_counter()
    ms = []
    if part == "kinds":
        doc["kinds"] = run_kinds(p["m"], p["samples"], p["teacher_epochs"], ctx)
        ms = [Measurement(k["kind"], "kinds-closed-form-fit", [k["fit_seconds"]], extra=k) for k in doc["kinds"]]
    else:
        doc[part], ms = run_part(part, p["config"], list(p["seeds"]), p["samples"], ctx, row.timing)
        ms += fit_measurements(doc[part]["rows"], group=f"{part}-fit")
    doc.setdefault("wall_s", {})[part] = time.perf_counter() - t0
    doc["setup"] = {**doc.get("setup", {}), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                    "command": ctx.command.removeprefix("python "), "quick": row.quick}
    doc["setup"].setdefault("config", {})[part] = {**p.get("config", {}), "samples": p["samples"],
                                                   **({"seeds": list(p["seeds"])} if "seeds" in p else {})}
    return Result(doc=doc, measurements=ms)
