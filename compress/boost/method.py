"""Gradient-boosted sequential layers: a model's head replaced by a hidden layer grown by gradient boosting.

Implements Emami and Martinez-Munoz, "Sequential Training of Neural Networks with Gradient Boosting",
IEEE Access 11 (2023), arXiv 1909.12098 (GBNN), on the frozen features of a trained backbone:

1. ``F0`` is the constant that minimises the loss on the training set: the per-output mean for
   regression (MSE), the centred log class priors for classification (softmax cross-entropy).
2. For ``t = 1..T``: the pseudo-residuals ``r = -dL/dF`` (``onehot(y) - softmax(F)``, or ``y - F``)
   are fitted by a one-hidden-layer net ``h_t`` with ``units`` neurons (full-batch L-BFGS on squared
   error) on a random subsample of the rows; ``rho_t = shrinkage x`` the Newton step of the loss along
   ``h_t`` on all rows; ``F += rho_t h_t(x)``.
3. Merge: the ``T`` nets become one ``Linear -> activation -> Linear`` with ``T x units`` hidden units
   (first layers concatenated, second layers scaled by ``rho_t``, output bias ``F0 + sum rho_t c_t``).
   Keeping the first ``t`` stages with the cumulative bias of stage ``t`` is exactly the boosted model
   stopped at step ``t``; each stage count is a variant of the returned :class:`Family`.

Example:
    >>> from slimkit import compress
    >>> fam = compress.boost(model, train=splits.train, val=splits.val, stages=8, units=8)
    >>> fam.names
    ['s1', 's2', 's3', 's4', 's5', 's6', 's7', 's8']
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from slimkit.runtime.errors import ConfigError

from ..family import Family, Variant, register_rebuilder, variant_config
from ..modules import replace_submodule
from ..outputs import Output
from ..preamble import prepare
from ..train import device_of, evaluate
from .booster import Booster, boosted_head
from .config import BoostConfig
from .head import check_head, find_head, head_features, head_targets, with_head

__all__ = ["boost", "rebuild"]


def boost(model: nn.Module, *, train: DataLoader, val: DataLoader | None = None, head: str | None = None,
          stages: int = 10, units: int = 8, shrinkage: float = 0.3, subsample: float = 0.5,
          task: str = "classification", example_input: torch.Tensor | None = None, progress: bool = True,
          seed: int = 0, output: Output = None, config: BoostConfig | None = None, **options) -> Family:
    """Replace ``model``'s head by a gradient-boosted hidden layer (GBNN, arXiv 1909.12098).

    The backbone (everything but the head) is frozen and shared by all variants; the head's inputs are
    computed once over ``train`` (kept in memory, N x features floats) and ``stages`` one-hidden-layer
    nets of ``units`` neurons are boosted on them. Variant ``s<t>`` keeps the first ``t`` stages: exactly
    the boosted model stopped at step ``t``.

    Args:
        model: a trained model whose output is its head's output (never modified).
        train: loader of ``(inputs, targets)`` the stages are fitted on (labels, or values for regression).
        val: optional loader for each variant's metrics.
        head: qualified name of the ``nn.Linear`` to replace (default: the last Linear that runs).
        stages: boosting steps; units: neurons per step (the merged head has ``stages * units``).
        shrinkage: multiplies every Newton step, in (0, 1]; subsample: fraction of rows per step, in (0, 1].
        task: ``"classification"`` (softmax cross-entropy) or ``"regression"`` (MSE).
        example_input: one input batch; taken from ``train`` when omitted.
        progress: show a progress bar over the stages; seed: seeds initialisation and subsampling.
        output: which tensor of the model's output to compress when it returns a ``ModelOutput``, dict or
            tuple: a key or attribute name (``"logits"``), an index, or a function ``out -> tensor``;
            every variant then returns that tensor (see :mod:`slimkit.compress.outputs`).
        config: a whole :class:`BoostConfig` instead of the keyword options.
        **options: the rest of :class:`BoostConfig` (``activation``, ``max_iter``, ``l2``, ``stage_counts``).

    Returns:
        A :class:`Family` with one variant per kept stage count, cheapest first, named ``s1``, ``s2``, ...
        Metrics: ``train_loss`` of the boosted model at that step, plus the ``val`` metrics.

    Raises:
        ConfigError: a bad option, an unknown or non-Linear ``head`` (the message lists the candidates),
            targets that do not fit the task.
        UnsupportedModelError: no Linear runs, or the model transforms the head's output.

    Example:
        >>> splits = data.sklearn_dataset("digits")
        >>> fam = boost(nn.Linear(64, 10), train=splits.train, val=splits.val, stages=8, units=8)
        >>> fam.names[:3]
        ['s1', 's2', 's3']
    """
    config = BoostConfig.resolve(config, dict(stages=stages, units=units, shrinkage=shrinkage, subsample=subsample,
                                              task=task, head=head, seed=seed), options)
    task, seed = config.task, config.seed
    prep = prepare("boost", model, train=train, val=val, example_input=example_input, seed=seed, task=task,
                   output=output)
    backbone, example_input, source = prep.model.requires_grad_(False), prep.example_input, prep.source
    device = device_of(backbone)
    name, old = find_head(backbone, config.head, example_input)
    check_head(backbone, name, old, example_input)
    outputs = old.out_features
    if task == "classification" and outputs < 2:
        raise ConfigError(f"head {name!r} has {outputs} output; task='classification' needs one logit per class "
                          "(>= 2 outputs, softmax cross-entropy); use task='regression' for one real output")
    gen = getattr(train, "generator", None)
    if isinstance(gen, torch.Generator):  # the same rows in the same order for the same seed (as fit does)
        gen.manual_seed(seed)
    x_tr, y_tr = head_features(backbone, old, train)
    booster = Booster(config).fit(x_tr, head_targets(y_tr, task, outputs, "train"), classes=outputs,
                                  progress=progress)
    val_feats = None
    if val is not None:
        x_va, y_va = head_features(backbone, old, val)
        val_feats = DataLoader(TensorDataset(x_va, head_targets(y_va, task, outputs, "val")), batch_size=1024)
    variants = []
    for t in config.counts:
        merged = booster.head(t)
        metrics = {"train_loss": booster.train_loss[t - 1]}
        if val_feats is not None:  # the model's output is the head's, so the head on val features suffices
            metrics.update(evaluate(merged, val_feats, task=task))
        merged.to(device)
        shape = {"head": name, "stages": t, "in_features": old.in_features, "out_features": outputs}
        variants.append(Variant.measure(f"s{t}", with_head(backbone, name, merged), example_input,
                                        metrics=metrics,
                                        config=variant_config(config, shape, {"rho": booster.rhos[:t]})))
    return Family(variants, method="boost", example_input=example_input.cpu(), task=task, source=source,
                  base=prep.base)


@register_rebuilder("boost")
def rebuild(base: nn.Module, config: dict, example_input: torch.Tensor) -> nn.Module:
    """The module of a saved GBNN variant (its weights still to load): the base with the merged head."""
    cfg, shape = BoostConfig.from_dict(config["recipe"]), config["shape"]
    merged = boosted_head(shape["in_features"], shape["stages"] * cfg.units, shape["out_features"], cfg.activation)
    return replace_submodule(copy.deepcopy(base).eval().requires_grad_(False), shape["head"], merged)
