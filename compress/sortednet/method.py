"""SortedNet: many nested sub-networks trained at once inside one model.

Implements Valipour, Rezagholizadeh et al., "SortedNet: A Scalable and Generalized Framework for
Training Modular Deep Neural Networks", arXiv 2309.00255 (and Sorted LLaMA, arXiv 2309.08968).

Sub-networks are prefixes: the first k channels of every coupled channel group (width), the first h
attention heads, and the first d blocks of each stack of identical blocks (depth). A smaller
sub-network's parameters are a subset of a larger one's. Each optimiser step runs a few sampled
sub-networks on the same batch (the largest and the smallest always, as in the US-Nets "sandwich" rule,
plus random ones), accumulates their gradients and steps once; the smaller ones can distil from the
largest's logits. BatchNorm statistics are kept per sub-network (shared affine weights, private
statistics) and recalibrated after training. Every sub-network extracts into a physically smaller
dense module whose output equals the supernet's at that size (:class:`~.supernet.SortedNet`).

Example:
    >>> from slimkit import compress
    >>> fam = compress.sortednet(model, train=train_loader, val=val_loader, widths=(0.25, 0.5, 1.0))
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader

from .. import graph
from ..family import Family, register_rebuilder
from ..outputs import Output
from ..preamble import prepare
from .config import SortedNetConfig
from .supernet import SortedNet

__all__ = ["sortednet"]


def sortednet(model: nn.Module, *, train: DataLoader, val: DataLoader | None = None,
              widths=(0.25, 0.5, 0.75, 1.0), depths=None, epochs: int = 10,
              example_input: torch.Tensor | None = None, progress: bool = True, seed: int = 0,
              output: Output = None, config: SortedNetConfig | None = None, **options) -> Family:
    """Train nested sub-networks of ``model`` (SortedNet, arXiv 2309.00255) and return them as a Family.

    Args:
        model: a trained model whose forward takes one batch-first tensor (not modified).
        train: loader of ``(inputs, targets)`` used for sorted training and BatchNorm calibration.
        val: loader for each variant's metrics.
        widths: width fractions; every coupled channel group (and attention heads) keeps that prefix.
        depths: fractions of each stack of identical blocks to keep, or None.
        epochs: training epochs (0 only slices and recalibrates).
        example_input: one input batch; taken from ``train`` when omitted.
        progress: show a progress bar.
        seed: seeds everything.
        output: which tensor of the model's output to compress when it returns a ``ModelOutput``, dict or
            tuple: a key or attribute name (``"logits"``), an index, or a function ``out -> tensor``;
            every variant then returns that tensor (see :mod:`slimkit.compress.outputs`).
        config: a whole :class:`SortedNetConfig` instead of the keyword options.
        **options: the rest of :class:`SortedNetConfig` (``lr``, ``strategy``, ``distill``, ...).

    Returns:
        A :class:`Family` with one variant per (width, depth), cheapest first, named ``w0.50`` (or
        ``w0.50-d0.50`` with depths).

    Example:
        >>> fam = sortednet(model, train=splits.train, val=splits.val, widths=(0.25, 0.5, 1.0), epochs=5)
        >>> fam.select(budget=0.3).name
        'w0.50'
    """
    cfg = SortedNetConfig.resolve(config, dict(widths=widths, depths=depths, epochs=epochs, seed=seed), options)
    prep = prepare("sortednet", model, train=train, val=val, example_input=example_input, seed=cfg.seed,
                   task=cfg.task, output=output)
    sn = SortedNet(prep.model, example_input=prep.example_input, config=cfg)
    sn.check()  # every sub-network builds and runs: refuse now, not after training
    sn.fit(train, progress=progress)
    return sn.family(val, source=prep.source)


@register_rebuilder("sortednet")
def rebuild(base: nn.Module, config: dict, example_input: torch.Tensor) -> nn.Module:
    """The module of a saved SortedNet variant (its weights still to load), from the base model."""
    cfg, shape = SortedNetConfig.from_dict(config["recipe"]), config["shape"]
    analysis = graph.analyze(base, example_input, ignore=cfg.ignore)
    small, _ = graph.shrink(base, example_input, analysis, keep=shape["channels"], depth=shape["blocks"])
    return small
