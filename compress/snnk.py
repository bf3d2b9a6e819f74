"""SNNK: replace a model's MLP blocks by scalable neural network kernels (random features + one matrix).

Implements Sehanobish, Choromanski, Zhao, Dubey, Likhosherstov, "Scalable Neural Network Kernels",
ICLR 2024, arXiv 2310.13225, from the spec in METHODS.md section 3 (the public research code has known
bugs and is not used).

Every chosen block ``Linear (act Linear)+`` (a classifier head, a Transformer FFN; found by
:func:`slimkit.compress.snnk_blocks.find_blocks`) becomes a bundled SNNK block
``y = Theta phi_L(... phi_1(x)) + c``: a fixed random input tower (``phi_k``: a seeded Gaussian
projection then ReLU / exp / cos-sin features, :mod:`~slimkit.compress.snnk_features`) and one trained
``out x m`` matrix. ``m``, the number of random features, is the compute knob: the family has one variant
per ``m``. Two ways to fit ``Theta``:

* ``mode="distill"``: initialise ``Theta`` from the trained weights (the paper's folded parameter tower,
  ``Theta = W_out Psi(W, b)``), then fine-tune the whole student against the original model with
  :func:`slimkit.compress.train.kd_loss` (through :func:`~slimkit.compress.train.fit`).
* ``mode="closed_form"``: ridge regression of each block's outputs on its random features over
  calibration batches, block after block, no backpropagation (seconds). ``epochs > 0`` adds the
  distillation afterwards.

Only ``Theta`` and the bias are parameters; the projections are buffers (regenerable from the seed,
stored in the ONNX file). Variants export through :func:`slimkit.export.bundle` (MatMul, Relu / Exp /
Cos / Sin, all real arithmetic) and rebuild from ``Family.save`` / ``Family.load``.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.utils.data import DataLoader

from slimkit.runtime.errors import ConfigError

from .cost import count_macs, count_params
from .family import Family, Variant, register_rebuilder
from .snnk_blocks import (
    Block,
    block_as_module,
    build_block,
    calibrate_scales,
    default_blocks,
    find_blocks,
    init_from_weights,
    linears_of,
    replace_block,
    snnk_module,
    unsupported,
)
from .snnk_features import KINDS
from .snnk_fit import block_samples, collect_stats, select_features, solve_ridge
from .train import TASKS, _device, evaluate, fit, progress_bar, set_seed

__all__ = ["snnk", "SNNKConfig", "KINDS", "MODES"]

MODES = ("distill", "closed_form")
Targets = str | Sequence[str] | Callable[[str, nn.Module], bool] | None


def _features(value) -> tuple[int, ...]:
    vals = (value,) if isinstance(value, int) and not isinstance(value, bool) else value
    try:
        vals = tuple(vals)
    except TypeError:
        vals = None
    if not vals or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in vals):
        raise ConfigError(f"features must be positive ints (the random features m per variant), got {value!r}; "
                          "e.g. features=(16, 64)")
    return tuple(sorted(set(vals)))


@dataclass
class SNNKConfig:
    """Options of :func:`snnk` (a JSON-serialisable recipe, stored with every variant).

    Attributes:
        features: the ``m`` of each variant (random features per SNNK layer).
        kind: feature map, one of :data:`KINDS`: ``"relu"`` (ReLU-SNNK, arc-cosine kernel), ``"exp"``
            (positive features), ``"cos"`` / ``"sin"`` (Fourier features, even ``m``).
        mode: ``"distill"`` or ``"closed_form"``.
        targets: names of the replaced blocks (resolved; see :func:`snnk`).
        epochs: distillation epochs (default: 10 for distill, 0 for closed_form).
        lr, weight_decay: AdamW settings of the distillation (one-cycle schedule).
        kd_alpha, temperature: weight and temperature of :func:`~slimkit.compress.train.kd_loss`.
        orthogonal: block-orthogonal random projections (lower variance) instead of i.i.d. Gaussian.
        ridge: ``"auto"`` (held-out choice) or a fixed lambda relative to the mean eigenvalue of ``Z^T Z``.
        pool: closed form only: draw ``pool * m`` candidate projections for each block's last random map
            and keep the ``m`` that carry most of the closed-form fit
            (:func:`~slimkit.compress.snnk_fit.select_features`); 1 keeps the first draw. Default: 2 for
            ``closed_form`` (measured: +2.5 points closed-form accuracy on the benchmark MLP, for a ridge
            solve of size ``2m`` instead of ``m``), 1 for ``distill``.
        calibration_batches: training batches used for scales and the closed-form fit.
        task: ``"classification"`` or ``"regression"``.
        seed: seeds the projections, the training and the data order.
    """

    features: tuple[int, ...] = (16, 64)
    kind: str = "relu"
    mode: str = "distill"
    targets: tuple[str, ...] = ()
    epochs: int | None = None
    lr: float = 3e-3
    weight_decay: float = 1e-4
    kd_alpha: float = 0.5
    temperature: float = 4.0
    orthogonal: bool = True
    ridge: float | str = "auto"
    pool: int | None = None
    calibration_batches: int = 64
    task: str = "classification"
    seed: int = 0
    version: int = field(default=1)

    def __post_init__(self):
        self.features = _features(self.features)
        self.targets = tuple(self.targets)
        if self.kind not in KINDS:
            raise ConfigError(f"kind={self.kind!r} is not one of {KINDS}")
        if self.mode not in MODES:
            raise ConfigError(f"mode={self.mode!r} is not one of {MODES}")
        if self.task not in TASKS:
            raise ConfigError(f"task={self.task!r} is not one of {TASKS}")
        if self.kind in ("cos", "sin") and any(m % 2 for m in self.features):
            raise ConfigError(f"kind={self.kind!r} pairs a cos and a sin per projection, so every m must be even; "
                              f"got features={self.features}")
        if self.epochs is None:
            self.epochs = 10 if self.mode == "distill" else 0
        if self.pool is None:
            self.pool = 2 if self.mode == "closed_form" else 1
        for name in ("epochs", "calibration_batches", "pool"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < (0 if name == "epochs" else 1):
                raise ConfigError(f"{name} must be a {'non-negative' if name == 'epochs' else 'positive'} int, "
                                  f"got {v!r}")
        if self.pool > 1 and self.mode != "closed_form":
            raise ConfigError(f"pool={self.pool} selects random features by their closed-form fit: it needs "
                              "mode='closed_form' (add epochs=N to distil afterwards), or pool=1")
        if self.mode == "distill" and self.epochs == 0:
            raise ConfigError("mode='distill' needs epochs >= 1; use mode='closed_form' for no training")
        if not (self.ridge == "auto" or (isinstance(self.ridge, (int, float)) and not isinstance(self.ridge, bool)
                                         and self.ridge >= 0)):
            raise ConfigError(f"ridge must be 'auto' or a non-negative number, got {self.ridge!r}")
        if not 0 <= self.kd_alpha <= 1:
            raise ConfigError(f"kd_alpha must be in [0, 1], got {self.kd_alpha!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def select_targets(model: nn.Module, example_input: torch.Tensor, targets: Targets = None) -> list[Block]:
    """The blocks ``targets`` names (see :func:`snnk`), in module order.

    Raises:
        UnsupportedModelError: the model has no replaceable block.
        ConfigError: a name that is not a replaceable block (the message lists those that are), or a
            filter that keeps none.
    """
    blocks = find_blocks(model, example_input)
    if not blocks:
        raise unsupported(model)
    names = [b.name for b in blocks]
    if targets is None:
        return default_blocks(blocks)
    if callable(targets):
        chosen = [b for b in blocks if targets(b.name, block_as_module(model, b))]
        if not chosen:
            raise ConfigError(f"the targets filter kept none of the replaceable blocks {names}")
    else:
        try:
            wanted = [targets] if isinstance(targets, str) else list(targets)
        except TypeError:
            raise ConfigError(f"targets must be None, a block name, a list of names or a filter function, "
                              f"got {targets!r}; replaceable blocks: {names}") from None
        unknown = [t for t in wanted if t not in names]
        if unknown or not wanted or not all(isinstance(t, str) for t in wanted):
            raise ConfigError(f"targets {unknown or wanted!r} are not replaceable blocks of "
                              f"{type(model).__name__}; choose among {names} (Linear-activation-Linear chains), "
                              "or pass targets=None for the default ones")
        chosen = [b for b in blocks if b.name in wanted]
    for i, a in enumerate(chosen):
        for b in chosen[i + 1:]:
            if set(a.modules) & set(b.modules):
                raise ConfigError(f"targets {a.name!r} and {b.name!r} overlap; choose blocks that share no layer")
    return chosen


def _student(teacher: nn.Module, blocks: list[Block], m: int, cfg: SNNKConfig, inputs: list[torch.Tensor]
             ) -> tuple[nn.Module, dict]:
    """A copy of ``teacher`` with every block replaced, fitted as ``cfg.mode`` says (no distillation yet)."""
    student = copy.deepcopy(teacher).eval()
    info = {}
    for i, blk in enumerate(blocks):
        device = _device(teacher.get_submodule(blk.linears[0]))
        new = build_block(blk, i, m, kind=cfg.kind, seed=cfg.seed, orthogonal=cfg.orthogonal).to(device)
        lins = linears_of(teacher, blk)
        calibrate_scales(new, lins, block_samples(student, blk, inputs))
        if cfg.mode == "closed_form":
            t0 = time.perf_counter()
            kept = select_features(student, teacher, blk, new, inputs, cfg.pool, cfg.ridge) if cfg.pool > 1 else None
            fit_stats, hold = collect_stats(student, teacher, blk, new, inputs)
            info[blk.name] = solve_ridge(new, fit_stats, hold, cfg.ridge)
            info[blk.name].update(seconds=time.perf_counter() - t0, selected=kept)
        else:
            init_from_weights(new, lins)
        student = replace_block(student, blk, new)
    return student.eval(), info


def snnk(model: nn.Module, *, train: DataLoader, val: DataLoader | None = None, targets: Targets = None,
         features: int | Sequence[int] = (16, 64), kind: str = "relu", mode: str = "distill",
         epochs: int | None = None, example_input: torch.Tensor | None = None, progress: bool = True,
         seed: int = 0, **options) -> Family:
    """Replace MLP blocks of ``model`` by SNNK layers (arXiv 2310.13225); one variant per ``m``.

    Args:
        model: a trained model whose forward takes one batch-first tensor (not modified).
        train: loader of ``(inputs, targets)``: calibration batches and the distillation data.
        val: loader for each variant's metrics.
        targets: which blocks to replace: None (every one-hidden-layer Linear-activation-Linear block,
            non-overlapping, taken from the output end of each chain), a block name or a list of names
            (``"blocks.0.ffn"``, ``"body.2..head"``, ``"body.0..head"`` for a two-hidden-layer bundle:
            see :func:`~slimkit.compress.snnk_blocks.find_blocks`), or a filter
            ``fn(name, module) -> bool`` over the candidates.
        features: the ``m`` of each variant (random features per layer): an int or a sequence of ints.
        kind: ``"relu"`` (default), ``"exp"``, ``"cos"`` or ``"sin"``: the random feature map.
        mode: ``"distill"`` (init from weights, then distillation) or ``"closed_form"`` (ridge regression
            to the original blocks' outputs, no backpropagation).
        epochs: distillation epochs (default 10 for distill, 0 for closed_form).
        example_input: one input batch; taken from ``train`` when omitted.
        progress: show a progress bar.
        seed: seeds the random projections and the training.
        **options: the rest of :class:`SNNKConfig` (``lr``, ``kd_alpha``, ``ridge``, ``pool``, ``orthogonal``,
            ...).

    Returns:
        A :class:`Family` with one variant per ``m``, named ``m16``, ``m64``, ..., cheapest first.

    Raises:
        UnsupportedModelError: the model has no replaceable block.
        ConfigError: bad features / kind / mode / targets (the message says what was received).

    Example:
        >>> fam = snnk(model, train=splits.train, val=splits.val, features=(16, 64), mode="closed_form")
        >>> fam.select(budget=0.5).name  # doctest: +SKIP
        'm16'
    """
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(train, DataLoader):
        raise ConfigError(f"train must be a torch DataLoader of (inputs, targets), got {type(train).__name__}")
    cfg = SNNKConfig(features=features, kind=kind, mode=mode, epochs=epochs, seed=seed, **options)
    if example_input is None:
        example_input = next(iter(train))[0][:2]
    teacher = copy.deepcopy(model).eval()
    blocks = select_targets(teacher, example_input, targets)
    cfg.targets = tuple(b.name for b in blocks)
    set_seed(seed)
    device = _device(teacher)
    inputs = [x.to(device) for _, (x, _y) in zip(range(cfg.calibration_batches), train)]
    source = {"params": count_params(model), "macs": count_macs(model, example_input),
              "block_params": _block_params(teacher, blocks)}
    if val is not None:
        source["metrics"] = evaluate(teacher, val, task=cfg.task)
    variants = []
    for m in progress_bar(cfg.features, enabled=progress, desc="snnk", total=len(cfg.features)):
        t0 = time.perf_counter()
        student, info = _student(teacher, blocks, m, cfg, inputs)
        fit_s = time.perf_counter() - t0
        train_s = 0.0
        if cfg.epochs:
            train_s = time.perf_counter()
            fit(student, train, epochs=cfg.epochs, lr=cfg.lr, weight_decay=cfg.weight_decay, task=cfg.task,
                teacher=teacher, kd_alpha=cfg.kd_alpha, temperature=cfg.temperature, progress=progress,
                seed=cfg.seed)
            train_s = time.perf_counter() - train_s
        metrics = evaluate(student, val, task=cfg.task) if val is not None else {}
        config = {"m": m, "blocks": [b.to_dict() for b in blocks], "snnk": cfg.to_dict(),
                  "block_params": sum(count_params(snnk_module(student, b)) for b in blocks),
                  "random_buffer_floats": sum(sum(p.numel() for p in snnk_module(student, b).buffers())
                                              for b in blocks),
                  "fit_seconds": fit_s, "train_seconds": train_s, "closed_form": info}
        variants.append(Variant.measure(f"m{m}", student, example_input, metrics=metrics, config=config))
    return Family(variants, method="snnk", example_input=example_input, task=cfg.task, source=source,
                  base=getattr(model, "slimkit_zoo", None))


def _block_params(model: nn.Module, blocks: list[Block]) -> int:
    return sum(count_params(model.get_submodule(n)) for b in blocks for n in b.linears)


@register_rebuilder("snnk")
def _rebuild(base: nn.Module, config: dict, example_input: torch.Tensor) -> nn.Module:
    cfg = config["snnk"]
    model = copy.deepcopy(base).eval()
    for i, rec in enumerate(config["blocks"]):
        blk = Block.from_dict(rec)
        new = build_block(blk, i, config["m"], kind=cfg["kind"], seed=cfg["seed"], orthogonal=cfg["orthogonal"])
        model = replace_block(model, blk, new)
    return model
