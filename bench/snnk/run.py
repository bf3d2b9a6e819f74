"""SNNK benchmark (issue 5): SNNK blocks versus a truncated-SVD low-rank factorisation of the same blocks.

Two parts, both on MNIST-1D (10,000 samples, 80/10/10, seed 0):

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
the same width would give; its block params count the projection).

Usage (repository root):

    .venv/bin/python bench/snnk.py            # full run -> bench/snnk_results.json, bench/SNNK_RESULTS.md
    .venv/bin/python bench/snnk.py --quick    # smoke run -> bench/out/snnk-quick.{json,md}
    .venv/bin/python bench/snnk.py --render bench/snnk_results.json   # markdown from the JSON only
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

import torch

torch.set_num_threads(1)

from _bench import atomic_write  # noqa: E402
from _snnk_baselines import (  # noqa: E402
    latencies,
    learned_projection,
    low_rank,
    lowrank_block_params,
    rank_for,
    snnk_block_cost,
)
from _snnk_report import markdown  # noqa: E402

from slimkit.compress import count_macs, count_params, data, evaluate, fit, zoo  # noqa: E402
from slimkit.compress.snnk import select_targets, snnk  # noqa: E402

ROOT = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("SNNK_BENCH_CACHE", "/tmp/snnk_bench"))

FULL = {
    "samples": 10_000, "seeds": [0, 1, 2],
    "mlp": {"features": [64, 128, 256, 512], "epochs": 20, "lr": 1e-2, "teacher_epochs": 10},
    # the zoo recipe leaves the MLP under-trained (~0.68); the same MLP trained 30 epochs at lr 1e-2 reaches ~0.80
    "mlp-strong": {"zoo": "mlp", "features": [128, 256, 512, 1024], "epochs": 20, "lr": 1e-2,
                   "teacher_epochs": 30, "teacher_lr": 1e-2, "seeds": [0, 1], "diagnostic": True},
    "transformer": {"features": [16, 32, 64], "epochs": 5, "lr": 2e-3, "teacher_epochs": 20, "seeds": [0]},
    "kinds_m": 128,
}
QUICK = {
    "samples": 2_000, "seeds": [0],
    "mlp": {"features": [32, 128], "epochs": 3, "lr": 1e-2, "teacher_epochs": 5},
    "mlp-strong": {"zoo": "mlp", "features": [128], "epochs": 3, "lr": 1e-2, "teacher_epochs": 8,
                   "teacher_lr": 1e-2, "seeds": [0], "diagnostic": True},
    "transformer": {"features": [16], "epochs": 1, "lr": 2e-3, "teacher_epochs": 2, "seeds": [0]},
    "kinds_m": 32,
}


# method -> (snnk mode, fine-tuning epochs (None: the part's cfg["epochs"]), extra options);
# -p1: without feature selection
SNNK_RUNS = {"snnk-cf": ("closed_form", 0, {}), "snnk-cf-p1": ("closed_form", 0, {"pool": 1}),
             "snnk-distill": ("distill", None, {}), "snnk-cf+kd": ("closed_form", None, {}),
             "snnk-cf+kd-p1": ("closed_form", None, {"pool": 1})}


def log(*a) -> None:
    print(*a, file=sys.stderr, flush=True)


def teacher(name: str, splits, epochs: int, lr: float, samples: int) -> tuple[torch.nn.Module, dict]:
    """The zoo model trained once with ``fit`` (seed 0), cached under ``CACHE``."""
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"{name}-{samples}-{epochs}-{lr:g}.pt"
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


def run_part(part: str, cfg: dict, seeds: list[int], samples: int) -> dict:
    name = cfg.get("zoo", part)
    splits = data.mnist1d(layout="flat" if name == "mlp" else "sequence", num_samples=samples, seed=0)
    model, info = teacher(name, splits, cfg["teacher_epochs"], cfg.get("teacher_lr", zoo.RECIPES[name]["lr"]), samples)
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
    lat = latencies(models, x)
    return {"teacher": info, "targets": [b.name for b in blocks], "original_block_params": original,
            "rows": rows, "latency": lat, "config": cfg}


def _block_macs(model, blocks, x) -> int:
    """MACs of the original blocks' Linears (per sample: tokens x in x out for sequence inputs)."""
    tokens = x.shape[1] if x.dim() == 3 else 1
    return sum(tokens * model.get_submodule(n).in_features * model.get_submodule(n).out_features
               for b in blocks for n in b.linears)


def run_kinds(m: int, samples: int) -> list[dict]:
    """Closed-form fits of the MLP head block with every feature kind (no backprop: seconds)."""
    splits = data.mnist1d(layout="flat", num_samples=samples, seed=0)
    model, _ = teacher("mlp", splits, FULL["mlp"]["teacher_epochs"] if samples == FULL["samples"]
                       else QUICK["mlp"]["teacher_epochs"], zoo.RECIPES["mlp"]["lr"], samples)
    out = []
    for kind in ("relu", "exp", "cos", "sin"):
        fam = snnk(model, train=splits.train, features=m, kind=kind, mode="closed_form", progress=False)
        v = fam.largest
        cf = next(iter(v.config["info"]["closed_form"].values()))
        out.append({"kind": kind, "m": m, "test_accuracy": evaluate(v.model, splits.test)["accuracy"],
                    "relative_mse": cf["train_mse"] / cf["target_var"], "fit_seconds": v.config["info"]["fit_seconds"]})
        log(f"[kinds] {kind}: {out[-1]}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--parts", nargs="+", default=["mlp", "mlp-strong", "transformer", "kinds"])
    ap.add_argument("--render", type=Path, help="write the markdown of an existing JSON and stop")
    args = ap.parse_args()
    out_json = ROOT / ("out/snnk-quick.json" if args.quick else "snnk_results.json")
    out_md = ROOT / ("out/snnk-quick.md" if args.quick else "SNNK_RESULTS.md")
    if args.render:
        (out_md).write_text(markdown(json.loads(args.render.read_text()), json_path=args.render))
        return
    cfg = QUICK if args.quick else FULL
    doc = json.loads(out_json.read_text()) if out_json.is_file() else {}
    doc["setup"] = {"config": cfg, "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                    "command": "bench/snnk.py" + (" --quick" if args.quick else "")}
    start = time.perf_counter()
    for part in args.parts:
        t0 = time.perf_counter()
        if part == "kinds":
            doc["kinds"] = run_kinds(cfg["kinds_m"], cfg["samples"])
        else:
            doc[part] = run_part(part, cfg[part], cfg["seeds"], cfg["samples"])
        doc.setdefault("wall_s", {})[part] = time.perf_counter() - t0
        atomic_write(out_json, json.dumps(doc, indent=1))
        out_md.write_text(markdown(doc, json_path=out_json))
    log(f"done in {time.perf_counter() - start:.0f}s -> {out_json}, {out_md}")


if __name__ == "__main__":
    main()
