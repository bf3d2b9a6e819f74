"""N2N: network-to-network compression by policy-gradient reinforcement learning, on arbitrary models.

Implements Ashok, Rhinehart, Beainy, Kitani, "N2N Learning: Network to Network Compression via Policy
Gradient Reinforcement Learning", ICLR 2018, arXiv 1709.06030, on top of slimkit's graph analysis:

1. **Removal.** A bidirectional LSTM reads one row per removable unit (shape-preserving blocks and
   layers found by :func:`slimkit.compress.graph.analyze`) and keeps or removes each; removed units
   become identities.
2. **Shrinkage.** An autoregressive LSTM picks a width ratio per coupled channel group of the reduced
   network (residual-coupled channels, attention heads, FFN width shrink together).
3. **Students** inherit the teacher's weights (channels sorted by importance first, so a kept prefix
   holds the strongest channels), are distilled briefly from the teacher and scored on the validation
   split with R = C(2 - C) * acc_s / acc_t, C = 1 - cost_s / cost_t. Rewards are cached by architecture.
4. Both policies are trained with REINFORCE (moving-average baseline). The result is the Pareto set
   (cost versus validation accuracy) of every student found, each given a final distillation.

Beyond the paper, with a budget: the search first scores the budget-meeting uniformly shrunk student (an
AMC-style anchor; He et al., ECCV 2018, arXiv 1802.03494), and every sampled action is projected onto the
budget and then widened again to exact channel counts that use it up (``fill``). ``rerank=k`` final-trains
the k best students by search reward instead of the Pareto spread, since the short proxy ranks close
students only roughly.

A ``budget`` such as ``{"params": 0.2}`` is a hard limit: students over it are never trained or returned
(during the search they score below every valid student, by how far they overshoot).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from slimkit.runtime.errors import ConfigError, UnsupportedModelError

from .. import graph
from ..family import Family, Variant, register_rebuilder, variant_config
from ..outputs import Output
from ..preamble import prepare
from ..reorder import sort_channels
from ..train import evaluate, fit
from .config import N2NConfig
from .policy_search import Checkpoint, run_search
from .search import Search

__all__ = ["n2n", "pareto_family", "pareto_front", "rebuild"]


def n2n(teacher: nn.Module, *, train: DataLoader, val: DataLoader, budget: dict[str, float] | None = None,
        cost: str | Callable[[nn.Module], float] = "params", iterations: int = 10, rollouts: int = 5,
        epochs: int = 1,
        example_input: torch.Tensor | None = None, progress: bool = True, seed: int = 0,
        output: Output = None, checkpoint: str | os.PathLike | None = None,
        policies: str | os.PathLike | None = None, config: N2NConfig | None = None, **options) -> Family:
    """Compress ``teacher`` with N2N (arXiv 1709.06030): an RL search over layer removal and shrinkage.

    Args:
        teacher: a trained classifier; never modified.
        train: loader for the students' distillation; val: loader that scores them (never the test set).
        budget: hard limits as fractions of the teacher's cost, e.g. ``{"params": 0.2}``.
        cost: what the reward's compression term counts: ``"params"``, ``"macs"``, or a callable
            ``module -> float`` such as ``slimkit.export.latency_cost(x)`` (named by its ``cost_name``
            attribute, which ``budget`` may then use: ``{"latency": 0.3}``).
        iterations: policy updates per stage; rollouts: students sampled per update.
        epochs: distillation epochs per sampled student (short: weights are inherited).
        example_input: one input batch; taken from ``train`` when omitted.
        progress: show iteration, best reward and best student; seed: seeds everything.
        output: which tensor of the model's output to compress when it returns a ``ModelOutput``, dict or
            tuple: a key or attribute name (``"logits"``), an index, or a function ``out -> tensor``;
            every variant then returns that tensor (see :mod:`slimkit.compress.outputs`).
        checkpoint: a directory; the search saves its state there every iteration and resumes from it.
            It also holds the trained policies (``policy-remove/``, ``policy-shrink/``).
        policies: a directory holding ``policy-remove/`` and/or ``policy-shrink/`` saved by another search
            (its checkpoint), to start from them: transfer, e.g. from a shallower teacher (the policies do
            not depend on the number of layers).
        config: a whole :class:`N2NConfig` instead of the keyword options.
        **options: the rest of :class:`N2NConfig` (``final_epochs``, ``ratios``, ``max_variants``,
            ``fill`` (default True), ``rerank`` (default 0: the Pareto spread), ...).

    Returns:
        The Pareto set (cost versus validation accuracy) of the students found, cheapest first.

    Example:
        >>> fam = n2n(teacher, train=splits.train, val=splits.val, budget={"params": 0.2}, iterations=8)
    """
    measure = None
    if callable(cost):
        measure = cost
        cost = getattr(cost, "cost_name", getattr(cost, "__name__", "custom"))
        options["custom_cost"] = cost
    cfg = N2NConfig.resolve(config, dict(cost=cost, budget=dict(budget or {}), iterations=iterations,
                                         rollouts=rollouts, epochs=epochs, seed=seed), options)
    prep = prepare("n2n", teacher, train=train, val=val, example_input=example_input, seed=cfg.seed,
                   val_required=True, output=output)
    work, x = prep.model, prep.example_input
    analysis = graph.analyze(work, x)
    if not analysis.units and not analysis.groups:
        raise UnsupportedModelError(f"N2N found nothing to remove or shrink in {type(teacher).__name__}")
    if analysis.frozen:
        kept = "; ".join(f"{root} ({why})" for root, why in analysis.frozen)
        warnings.warn(f"N2N keeps {len(analysis.frozen)} channel group(s) of {type(teacher).__name__} at full "
                      f"width: {kept}", stacklevel=2)
    sort_channels(work, x, analysis)
    search = Search(work, x, train, val, cfg, progress, measure,
                    teacher_acc=prep.source["metrics"]["accuracy"])
    floor = search.smallest_cost()
    for k, b in cfg.budget.items():
        if b < floor[k]:
            raise ConfigError(f"budget {{{k!r}: {b}}} cannot be met: the smallest student this search can build "
                              f"has {k} = {floor[k]:.4f} of the teacher's; raise the budget to at least that")
    state = Checkpoint(checkpoint, cfg)
    run_search(search, state, Path(policies) if policies is not None else None)
    return pareto_family(search, teacher, cfg, prep.source)


def pareto_family(search: Search, teacher: nn.Module, cfg: N2NConfig, source: dict | None = None) -> Family:
    """Final-train the chosen students of ``search`` (the Pareto spread, or the ``rerank`` best) and return
    them as a Family; ``source`` is the teacher's measures (default: the search's own)."""
    valid = [s for s in search.cache.values() if s.error is None and not math.isnan(s.accuracy)]
    if not valid:
        raise UnsupportedModelError("N2N found no valid student within the budget; see the warnings above")
    if cfg.rerank:  # the short proxy ranks students roughly: final-train the top few, keep the best
        front = sorted(valid, key=lambda s: -s.reward)[:cfg.rerank]
    else:
        valid.sort(key=lambda s: (s.cost[cfg.cost], -s.accuracy))
        front = pareto_front(valid, lambda s: s.accuracy)
        if len(front) > cfg.max_variants:  # keep the spread: evenly spaced in cost, always the best one
            idx = np.unique(np.linspace(0, len(front) - 1, cfg.max_variants).round().astype(int))
            front = [front[i] for i in idx]
    x = search.x
    variants = []
    for s in front:
        student = search.build(s.arch)
        fit(student, search.train, epochs=cfg.final_epochs, lr=cfg.lr, teacher=search.teacher, progress=False,
            seed=cfg.seed)
        metrics = evaluate(student, search.val)
        name = f"n2n-{cfg.cost}{s.cost[cfg.cost]:.3f}"
        if any(v.name == name for v in variants):  # reranked students can round to the same cost
            name += f"-{sum(v.name.startswith(name) for v in variants) + 1}"
        config = variant_config(cfg, {"remove": s.arch["remove"], "channels": s.arch["channels"]},
                                {"search_reward": s.reward, "search_accuracy": s.accuracy,
                                 "search_cost": s.cost[cfg.cost]})
        variants.append(Variant.measure(name, student, x, metrics=metrics, config=config))
    if cfg.rerank:  # the Pareto set by final validation accuracy
        variants.sort(key=lambda v: (v.config["info"]["search_cost"], -v.metrics["accuracy"]))
        variants = pareto_front(variants, lambda v: v.metrics["accuracy"])
    if source is None:
        source = {"params": search.teacher_cost["params"], "macs": search.teacher_cost["macs"],
                  "metrics": {"accuracy": search.teacher_acc}}
    return Family(variants, method="n2n", example_input=x, source=source,
                  base=getattr(teacher, "slimkit_zoo", None))


def pareto_front(items: list, accuracy: Callable) -> list:
    """The Pareto front of ``items`` sorted cheapest first: each one more accurate than all cheaper ones."""
    front, best = [], -1.0
    for it in items:
        if accuracy(it) > best:
            front.append(it)
            best = accuracy(it)
    return front


@register_rebuilder("n2n")
def rebuild(base: nn.Module, config: dict, example_input: torch.Tensor) -> nn.Module:
    """The module of a saved N2N student (its weights still to load), from the teacher."""
    N2NConfig.from_dict(config["recipe"])  # refuses a recipe this slimkit cannot read
    shape = config["shape"]
    analysis = graph.analyze(base, example_input)
    small, _ = graph.shrink(base, example_input, analysis, keep=shape["channels"], remove=shape["remove"])
    return small

