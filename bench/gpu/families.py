"""The two families the GPU check measures, built in the run itself through slimkit's public API.

Both are built on the machine that measures them, so the ``torch.export`` programs in the bundle are
written by the torch that loads them (a ``.pt2`` from a newer torch may not load in an older one).

* ``demo``: what ``slimkit demo`` builds: MNIST-1D, the zoo residual 1-D CNN as teacher (trained on
  the check's device), a SortedNet family of widths 0.25 ... 1.0. SortedNet runs without training
  epochs (it still ranks channels, slices every width and recalibrates BatchNorm), as the latency
  suite in ``bench/conftest.py`` does: the check is about deployment, and SortedNet's training on the
  CPU took minutes here, which the GPU machine's lease cannot spare. So the smaller widths are less
  accurate than the demo's (``bench/RESULTS.md`` has the trained family).
* ``encoder``: a BERT-style encoder (4 pre-LN layers, hidden 256, 4 heads of 64, FFN 1024, sequence
  128) from the zoo ``transformer``, sliced by SortedNet into widths 0.25 ... 1.0 (heads and FFN units;
  the residual width stays 256). Random weights and inputs: latency and parity do not depend on
  training. Its input is ``(B, 128, 32)`` float features, standing in for token embeddings (the zoo
  encoder has no embedding table). A Hugging Face ``transformers`` BERT is not used: its export hits
  defects being fixed in issue 15.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, TensorDataset

from slimkit import compress

__all__ = ["FamilySpec", "FAMILIES", "demo_family", "encoder_family", "cache_data", "WIDTHS", "QUICK_WIDTHS"]

WIDTHS = (0.25, 0.5, 0.75, 1.0)
QUICK_WIDTHS = (0.25, 1.0)  # two variants are enough to switch between; halves the export time

# (full, quick) settings
DEMO = {"full": {"samples": 10_000, "teacher_epochs": 6, "epochs": 0},
        "quick": {"samples": 1_000, "teacher_epochs": 1, "epochs": 0}}
ENCODER = {"full": {"in_features": 32, "seq_len": 128, "d_model": 256, "num_heads": 4, "num_layers": 4,
                    "ffn_dim": 1024, "num_classes": 2},
           "quick": {"in_features": 8, "seq_len": 16, "d_model": 32, "num_heads": 4, "num_layers": 1,
                     "ffn_dim": 64, "num_classes": 2}}


@dataclass(frozen=True)
class FamilySpec:
    """One family of the check.

    Attributes:
        name: key in the results (``"demo"``, ``"encoder"``).
        title: heading in the report.
        build: ``build(quick, seed, device) -> (Family, info)``.
        need_s: seconds its build, export and measurement take on the GPU machine (full mode); the run
            skips the family when less than this is left of its budget.
        time_reference: also time the onnxruntime CPU reference (cheap for the demo family; the encoder
            at batch 64 would take a large share of the budget on CPU, so it is used for parity only).
        graphs_target: the CUDA-graphs target of the issue applies to this family.
    """

    name: str
    title: str
    build: Callable[[bool, int, str], tuple[Any, dict]]
    need_s: float
    time_reference: bool
    graphs_target: bool


def demo_family(quick: bool, seed: int, device: str) -> tuple[Any, dict]:
    """MNIST-1D -> zoo ResCNN teacher (fit on ``device``) -> SortedNet widths; the Family and how it was made."""
    cfg = DEMO["quick" if quick else "full"]
    widths = QUICK_WIDTHS if quick else WIDTHS
    splits = compress.data.mnist1d(num_samples=cfg["samples"], layout="channels", seed=seed)
    torch.manual_seed(seed)
    teacher, trained_on = compress.zoo.build("rescnn").to(device), device
    try:
        compress.fit(teacher, splits.train, splits.val, epochs=cfg["teacher_epochs"], progress=False, seed=seed)
    except Exception as e:  # noqa: BLE001 - a failed GPU fit must not cost the deployment figures
        if device == "cpu":
            raise
        trained_on = f"cpu (the fit on {device} failed: {type(e).__name__}: {e})"
        torch.manual_seed(seed)
        teacher = compress.zoo.build("rescnn")
        compress.fit(teacher, splits.train, splits.val, epochs=cfg["teacher_epochs"], progress=False, seed=seed)
    teacher.cpu()  # SortedNet analyses and slices the model on the CPU
    fam = compress.sortednet(teacher, train=splits.train, val=splits.val, widths=widths, epochs=cfg["epochs"],
                             example_input=splits.example_input, progress=False, seed=seed)
    info = {"model": "zoo rescnn (residual 1-D CNN, channels 32/64)", "data": f"MNIST-1D, {cfg['samples']} samples",
            "input": list(splits.example_input.shape[1:]), **cfg, "widths": list(widths),
            "teacher_trained_on": trained_on, "teacher_val": compress.evaluate(teacher, splits.val)}
    return fam, info


def cache_data(cache_dir: str, seed: int = 0) -> None:
    """Generate the demo family's MNIST-1D arrays (full and quick) into ``cache_dir``.

    ``make gpu-prepare`` carries them in ``.whl/cache`` and ``run.sh`` points ``SLIMKIT_CACHE_DIR`` at
    them, so the GPU machine neither spends the time nor needs the ``mnist1d`` package to import there
    (its wheel still travels: the cache key holds its version).
    """
    for cfg in DEMO.values():
        compress.data.mnist1d(num_samples=cfg["samples"], seed=seed, cache_dir=cache_dir)


def encoder_family(quick: bool, seed: int, device: str) -> tuple[Any, dict]:
    """A BERT-style zoo encoder with random weights, sliced into SortedNet widths (no training, so
    ``device`` is not used)."""
    cfg = ENCODER["quick" if quick else "full"]
    widths = QUICK_WIDTHS if quick else WIDTHS
    torch.manual_seed(seed)
    model = compress.zoo.build("transformer", **cfg)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(64, cfg["seq_len"], cfg["in_features"], generator=gen)
    y = torch.randint(0, cfg["num_classes"], (64,), generator=gen)
    loader = DataLoader(TensorDataset(x, y), batch_size=32)
    fam = compress.sortednet(model, train=loader, widths=widths, epochs=0, example_input=x[:1],
                             progress=False, seed=seed)
    info = {"model": "zoo transformer (pre-LN encoder), random weights", "data": "random inputs",
            "input": [cfg["seq_len"], cfg["in_features"]], **cfg, "widths": list(widths),
            "params_full": compress.count_params(model)}
    return fam, info


FAMILIES = (
    FamilySpec("demo", "Demo family: SortedNet ResCNN on MNIST-1D", demo_family, need_s=60.0,
               time_reference=True, graphs_target=True),
    FamilySpec("encoder", "BERT-style encoder family (zoo transformer)", encoder_family,
               need_s=120.0, time_reference=False, graphs_target=False),
)
