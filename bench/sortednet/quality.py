"""Quality figures of the SortedNet row: SortedNet widths versus independently trained networks.

The recipe: MNIST-1D, a zoo ResCNN teacher trained with ``fit`` for T epochs, SortedNet over it for S
epochs. Each width is compared with a network of exactly the same shape (same zoo model, channels
scaled to the variant's, every parameter shape checked) trained from scratch with ``fit`` for T + S
epochs, the total the sub-network saw.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from slimkit import compress

__all__ = ["ZOO_KWARGS", "train_teacher", "train_sortednet", "stage_channels", "independent", "onnx_parity"]

ZOO_KWARGS = {"channels": (32, 64), "depths": (2, 2)}  # the zoo ResCNN the demo uses


def train_teacher(splits, *, epochs: int, seed: int) -> tuple[nn.Module, dict]:
    torch.manual_seed(seed)
    model = compress.zoo.build("rescnn", **ZOO_KWARGS)
    t = time.perf_counter()
    compress.fit(model, splits.train, splits.val, epochs=epochs, progress=False, seed=seed)
    wall = time.perf_counter() - t
    return model, {"test_accuracy": compress.evaluate(model, splits.test)["accuracy"], "epochs": epochs,
                   "params": compress.count_params(model), "wall_s": wall}


def train_sortednet(teacher: nn.Module, splits, *, widths: Sequence[float], epochs: int, seed: int):
    t = time.perf_counter()
    fam = compress.sortednet(teacher, train=splits.train, val=splits.val, widths=widths, epochs=epochs,
                             example_input=splits.example_input, progress=False, seed=seed)
    return fam, time.perf_counter() - t


def stage_channels(module: nn.Module) -> tuple[int, ...]:
    """Channels of each stage of an (extracted) ResCNN: the output width of each stage's last block."""
    out = []
    for stage in module.stages:
        last = stage.blocks[-1] if len(stage.blocks) else stage.down
        out.append(int(last.conv2.out_channels))
    return tuple(out)


def _same_shapes(a: nn.Module, b: nn.Module) -> bool:
    sa = {k: tuple(v.shape) for k, v in a.state_dict().items()}
    sb = {k: tuple(v.shape) for k, v in b.state_dict().items()}
    return sa == sb


def independent(variant, splits, *, epochs: int, seed: int) -> dict:
    """Train a from-scratch ResCNN with the variant's exact shapes; its test accuracy and wall time."""
    channels = stage_channels(variant.model)
    torch.manual_seed(seed)
    model = compress.zoo.build("rescnn", channels=channels, depths=ZOO_KWARGS["depths"])
    if not _same_shapes(model, variant.model):
        raise RuntimeError(f"zoo rescnn channels={channels} does not match {variant.name}'s parameter shapes")
    t = time.perf_counter()
    compress.fit(model, splits.train, splits.val, epochs=epochs, progress=False, seed=seed)
    wall = time.perf_counter() - t
    return {"channels": list(channels), "seed": seed, "epochs": epochs, "params": compress.count_params(model),
            "test_accuracy": compress.evaluate(model, splits.test)["accuracy"], "wall_s": wall}


@torch.no_grad()
def onnx_parity(fam, engine, loader, log: Callable[[str], None] = lambda s: None) -> list[dict]:
    """Per variant: test accuracy through PyTorch and through the engine, and how far the logits differ."""
    rows = []
    for v in fam.variants:
        v.model.eval()
        correct_t = correct_o = disagree = total = 0
        max_diff = 0.0
        for x, y in loader:
            lt = v.model(x).numpy()
            lo = engine.run(x.numpy(), variant=v.name)
            pt, po = lt.argmax(-1), lo.argmax(-1)
            correct_t += int((pt == y.numpy()).sum())
            correct_o += int((po == y.numpy()).sum())
            disagree += int((pt != po).sum())
            max_diff = max(max_diff, float(np.abs(lt - lo).max()))
            total += len(y)
        rows.append({"variant": v.name, "acc_torch": correct_t / total, "acc_onnx": correct_o / total,
                     "predictions_differing": disagree, "max_abs_logit_diff": max_diff, "samples": total})
        log(f"      {v.name}: torch {correct_t / total:.4f}  onnx {correct_o / total:.4f}  "
            f"differing predictions {disagree}  max |dlogit| {max_diff:.2e}")
    return rows
