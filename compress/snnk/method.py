"""SNNK: replace a model's MLP blocks by scalable neural network kernels (random features + one matrix).

Implements Sehanobish, Choromanski, Zhao, Dubey, Likhosherstov, "Scalable Neural Network Kernels",
ICLR 2024, arXiv 2310.13225, from the spec in METHODS.md section 3 (the public research code has known
bugs and is not used).

Every chosen block ``Linear (act Linear)+`` (a classifier head, a Transformer FFN; found by
:func:`slimkit.compress.snnk.blocks.find_blocks`) becomes a bundled SNNK block
``y = Theta phi_L(... phi_1(x)) + c``: a fixed random input tower (``phi_k``: a seeded Gaussian
projection then ReLU / exp / cos-sin features, :mod:`~slimkit.compress.snnk.features`) and one trained
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
import dataclasses
import time
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader

from slimkit.runtime.errors import ConfigError

from ..cost import count_params
from ..family import Family, Variant, register_rebuilder, variant_config
from ..outputs import Output
from ..preamble import prepare
from ..train import device_of, evaluate, fit, progress_bar, set_seed
from .blocks import (
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
from .config import SNNKConfig
from .fit import block_samples, collect_stats, select_features, solve_ridge

__all__ = ["snnk", "select_targets", "rebuild"]

Targets = str | Sequence[str] | Callable[[str, nn.Module], bool] | None


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
        device = device_of(teacher.get_submodule(blk.linears[0]))
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
         seed: int = 0, output: Output = None, config: SNNKConfig | None = None, **options) -> Family:
    """Replace MLP blocks of ``model`` by SNNK layers (arXiv 2310.13225); one variant per ``m``.

    Args:
        model: a trained model whose forward takes one batch-first tensor (not modified).
        train: loader of ``(inputs, targets)``: calibration batches and the distillation data.
        val: loader for each variant's metrics.
        targets: which blocks to replace: None (every one-hidden-layer Linear-activation-Linear block,
            non-overlapping, taken from the output end of each chain), a block name or a list of names
            (``"blocks.0.ffn"``, ``"body.2..head"``, ``"body.0..head"`` for a two-hidden-layer bundle:
            see :func:`~slimkit.compress.snnk.blocks.find_blocks`), or a filter
            ``fn(name, module) -> bool`` over the candidates.
        features: the ``m`` of each variant (random features per layer): an int or a sequence of ints.
        kind: ``"relu"`` (default), ``"exp"``, ``"cos"`` or ``"sin"``: the random feature map.
        mode: ``"distill"`` (init from weights, then distillation) or ``"closed_form"`` (ridge regression
            to the original blocks' outputs, no backpropagation).
        epochs: distillation epochs (default 10 for distill, 0 for closed_form).
        example_input: one input batch; taken from ``train`` when omitted.
        progress: show a progress bar.
        seed: seeds the random projections and the training.
        output: which tensor of the model's output to compress when it returns a ``ModelOutput``, dict or
            tuple: a key or attribute name (``"logits"``), an index, or a function ``out -> tensor``;
            every variant then returns that tensor (see :mod:`slimkit.compress.outputs`).
        config: a whole :class:`SNNKConfig` instead of the keyword options (its ``targets``, if set, are
            used when ``targets`` is None).
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
    cfg = SNNKConfig.resolve(config, dict(features=features, kind=kind, mode=mode, epochs=epochs, seed=seed),
                             options)
    prep = prepare("snnk", model, train=train, val=val, example_input=example_input, seed=cfg.seed,
                   task=cfg.task, output=output)
    teacher, example_input = prep.model, prep.example_input
    blocks = select_targets(teacher, example_input, targets if targets is not None else (cfg.targets or None))
    cfg = dataclasses.replace(cfg, targets=tuple(b.name for b in blocks))
    set_seed(cfg.seed)  # the calibration batches do not depend on what the preamble drew
    device = device_of(teacher)
    inputs = [x.to(device) for _, (x, _y) in zip(range(cfg.calibration_batches), train)]
    source = {**prep.source, "block_params": _block_params(teacher, blocks)}
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
        config = variant_config(cfg, {"m": m, "blocks": [b.to_dict() for b in blocks]}, {
            "block_params": sum(count_params(snnk_module(student, b)) for b in blocks),
            "random_buffer_floats": sum(sum(p.numel() for p in snnk_module(student, b).buffers()) for b in blocks),
            "fit_seconds": fit_s, "train_seconds": train_s, "closed_form": info})
        variants.append(Variant.measure(f"m{m}", student, example_input, metrics=metrics, config=config))
    return Family(variants, method="snnk", example_input=example_input, task=cfg.task, source=source,
                  base=prep.base)


def _block_params(model: nn.Module, blocks: list[Block]) -> int:
    return sum(count_params(model.get_submodule(n)) for b in blocks for n in b.linears)


@register_rebuilder("snnk")
def rebuild(base: nn.Module, config: dict, example_input: torch.Tensor) -> nn.Module:
    """The module of a saved SNNK variant (its weights still to load), from the base model."""
    cfg, shape = SNNKConfig.from_dict(config["recipe"]), config["shape"]
    model = copy.deepcopy(base).eval()
    for i, rec in enumerate(shape["blocks"]):
        blk = Block.from_dict(rec)
        new = build_block(blk, i, shape["m"], kind=cfg.kind, seed=cfg.seed, orthogonal=cfg.orthogonal)
        model = replace_block(model, blk, new)
    return model
