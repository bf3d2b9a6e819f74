"""GBNN benchmark (issue 5): a gradient-boosted head versus the same-width head trained with Adam.

For each dataset and seed, on the same frozen features:

* ``compress.boost``: ``STAGES`` stages of ``UNITS`` tanh units (``STAGES * UNITS`` hidden units merged),
  library defaults otherwise; the test accuracy of every variant (stage count) gives the curve.
* the Adam head: ``Linear(F, STAGES * UNITS) -> tanh -> Linear``, trained with ``fit`` (AdamW, one-cycle)
  on the same standardised features; its learning rate is picked per seed from ``ADAM_LRS`` by
  validation accuracy (the boosted head gets no tuning).

Datasets: scikit-learn's breast cancer, wine and digits on their raw (standardised) features, i.e. the
model is a single ``nn.Linear`` and boost grows it into a one-hidden-layer net, as in the paper; and
MNIST-1D on the pooled features of the zoo ResCNN, whose head boost replaces: once trained for 4 epochs
(features a linear head already separates: 0.989) and once for 1 epoch (weaker features, where the head
matters). Teachers are trained once and cached in the method's scratch folder.

Rows: bench/boost/rows.py (``python -m bench boost``).

Targets: the full boosted head within 1 point of the Adam head (mean test accuracy over seeds); keeping
half of the stages loses at most 1 point against all of them.
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from bench.boost.report import summarise
from bench.core import Context, Measurement, Result, Row
from slimkit.compress import data, evaluate, fit, zoo
from slimkit.compress.boost import BoostConfig, boost, boosted_head, head_features

__all__ = ["STAGES", "UNITS", "ADAM_LRS", "measure"]

STAGES, UNITS = 10, 8
ADAM_LRS = (1e-3, 3e-3, 1e-2)
DEFAULTS = BoostConfig()


def _loader(x: torch.Tensor, y: torch.Tensor, *, shuffle: bool, seed: int = 0) -> DataLoader:
    gen = torch.Generator().manual_seed(seed)
    return DataLoader(TensorDataset(x, y), batch_size=128 if len(y) > 2000 else 64, shuffle=shuffle,
                      generator=gen if shuffle else None, drop_last=shuffle and len(y) > 128)


def adam_head(feats: dict, classes: int, *, epochs: int, seed: int) -> dict:
    """The same-width head trained with AdamW on standardised features; lr picked by val accuracy."""
    (xt, yt), (xv, yv), (xs, ys) = feats["train"], feats["val"], feats["test"]
    mean, std = xt.mean(0), xt.std(0).clamp_min(1e-8)
    norm = [(x - mean) / std for x in (xt, xv, xs)]
    best, start = None, time.perf_counter()
    for lr in ADAM_LRS:
        torch.manual_seed(seed)
        head = boosted_head(xt.shape[1], STAGES * UNITS, classes, DEFAULTS.activation)
        fit(head, _loader(norm[0], yt, shuffle=True, seed=seed), epochs=epochs, lr=lr, progress=False, seed=seed)
        val = evaluate(head, _loader(norm[1], yv, shuffle=False))["accuracy"]
        if best is None or val > best["val_accuracy"]:
            test = evaluate(head, _loader(norm[2], ys, shuffle=False))["accuracy"]
            best = {"lr": lr, "val_accuracy": val, "test_accuracy": test}
    best["seconds"] = time.perf_counter() - start  # all three learning rates
    return best


def gbnn(model: nn.Module, splits, *, seed: int) -> dict:
    start = time.perf_counter()
    fam = boost(model, train=splits.train, val=splits.val, stages=STAGES, units=UNITS, progress=False, seed=seed)
    seconds = time.perf_counter() - start
    curve = [evaluate(v.model, splits.test)["accuracy"] for v in fam]
    return {"test_accuracy_by_stage": curve, "val_accuracy_by_stage": [v.metrics["accuracy"] for v in fam],
            "train_loss_by_stage": [v.metrics["train_loss"] for v in fam], "rho": fam.largest.config["info"]["rho"],
            "macs_by_stage": [v.macs for v in fam], "seconds": seconds}


def run_tabular(name: str, seeds: list[int], epochs: int, log) -> dict:
    rows = []
    for seed in seeds:
        splits = data.sklearn_dataset(name, seed=seed)
        d, k = splits.input_shape[0], splits.num_classes
        feats = {s: getattr(splits, s).dataset.tensors for s in ("train", "val", "test")}
        torch.manual_seed(seed)
        rows.append({"seed": seed, "gbnn": gbnn(nn.Linear(d, k), splits, seed=seed),
                     "adam": adam_head(feats, k, epochs=epochs, seed=seed)})
        log(f"{name} seed {seed}: gbnn {rows[-1]['gbnn']['test_accuracy_by_stage'][-1]:.4f} "
            f"adam {rows[-1]['adam']['test_accuracy']:.4f}")
    return {"features": f"raw standardised inputs ({d})", "test_samples": len(feats["test"][1]), "runs": rows}


def mnist_teacher(splits, epochs: int, cache: Path, log) -> nn.Module:
    model = zoo.build("rescnn")
    path = cache / f"boost-teacher-rescnn-{len(splits.train.dataset)}-e{epochs}.pt"
    if path.is_file():
        model.load_state_dict(torch.load(path, weights_only=True))
        return model.eval()
    torch.manual_seed(0)
    log(f"training the MNIST-1D teacher ({epochs} epochs) ...")
    fit(model, splits.train, epochs=epochs, progress=False, seed=0, **{k: v for k, v in zoo.RECIPES["rescnn"].items()
                                                                      if k != "epochs"})
    cache.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache, suffix=".tmp")
    os.close(fd)
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, path)
    return model.eval()


def run_mnist(seeds: list[int], cache: Path, log, *, samples: int, teacher_epochs: int, adam_epochs: int) -> dict:
    splits = data.mnist1d(num_samples=samples, layout="channels", seed=0)
    teacher = mnist_teacher(splits, teacher_epochs, cache, log)
    feats = {}
    for s in ("train", "val", "test"):
        loader = getattr(splits, s)
        feats[s] = head_features(teacher, teacher.head, DataLoader(loader.dataset, batch_size=512))
    rows = []
    for seed in seeds:
        rows.append({"seed": seed, "gbnn": gbnn(teacher, splits, seed=seed),
                     "adam": adam_head(feats, 10, epochs=adam_epochs, seed=seed)})
        log(f"mnist1d (teacher {teacher_epochs} epochs) seed {seed}: gbnn {rows[-1]['gbnn']['test_accuracy_by_stage'][-1]:.4f} "
            f"adam {rows[-1]['adam']['test_accuracy']:.4f}")
    return {"features": f"ResCNN pooled features ({feats['train'][0].shape[1]}), teacher trained {teacher_epochs} "
                        f"epochs on {samples} samples", "test_samples": len(feats["test"][1]),
            "teacher_test_accuracy": evaluate(teacher, splits.test)["accuracy"], "runs": rows}


# -- summary ----------------------------------------------------------------------------------------------
def measure(row: Row, ctx: Context) -> Result:
    p, log = row.params, ctx.log
    start = time.perf_counter()
    doc: dict = {"datasets": {}}
    for name, epochs in p["tabular"].items():
        doc["datasets"][name] = run_tabular(name, list(p["seeds"]), epochs, log)
    mnist = dict(p["mnist"])
    for epochs in mnist["teacher_epochs"]:
        doc["datasets"][f"mnist1d-e{epochs}"] = run_mnist(list(p["mnist_seeds"]), ctx.scratch, log, samples=mnist["samples"],
                                                          teacher_epochs=epochs, adam_epochs=mnist["adam_epochs"])
    doc["setup"] = {"command": ctx.command, "seeds": list(p["seeds"]), "mnist_seeds": list(p["mnist_seeds"]),
                    "stages": STAGES, "units": UNITS, "adam_lrs": list(ADAM_LRS), "boost_defaults": DEFAULTS.to_dict(),
                    "mnist": mnist, "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                    "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores (shared)",
                    "seconds": time.perf_counter() - start, "quick": row.quick}
    doc["summary"] = summarise(doc)
    ms = []
    for name, res in doc["datasets"].items():
        acc = doc["summary"][name]
        for head in ("adam", "gbnn"):
            ms.append(Measurement(head, name, [r[head]["seconds"] for r in res["runs"]],
                                  baseline=None if head == "adam" else "adam",
                                  extra={"what": "fit seconds per seed (Adam: all three learning rates)",
                                         "test_accuracy_mean": acc[head], "test_accuracy_std": acc[f"{head}_std"],
                                         "gap_vs_adam_points": 100 * acc["gap_vs_adam"],
                                         "within_1pt_of_adam": acc["within_1pt_of_adam"],
                                         "half_loses_at_most_1pt": acc["half_loses_at_most_1pt"]}))
    return Result(doc=doc, measurements=ms)
