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

import copy
import json
import math
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from slimkit.policies import N_FEATURES, Reinforce, RemovalPolicy, ShrinkPolicy, load_policy, save_policy
from slimkit.runtime.errors import ConfigError, UnsupportedModelError

from . import graph
from .family import Family, Variant, register_rebuilder
from .n2n_search import COSTS, RATIOS, N2NConfig, _Search, _Student
from .reorder import sort_channels
from .train import evaluate, fit, progress_bar, set_seed

__all__ = ["n2n", "N2NConfig", "COSTS", "RATIOS"]


def n2n(teacher: nn.Module, *, train: DataLoader, val: DataLoader, budget: dict[str, float] | None = None,
        cost: str | Callable[[nn.Module], float] = "params", iterations: int = 10, rollouts: int = 5,
        epochs: int = 1,
        example_input: torch.Tensor | None = None, progress: bool = True, seed: int = 0,
        checkpoint: str | os.PathLike | None = None, policies: str | os.PathLike | None = None,
        **options) -> Family:
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
        checkpoint: a directory; the search saves its state there every iteration and resumes from it.
            It also holds the trained policies (``policy-remove/``, ``policy-shrink/``).
        policies: a directory holding ``policy-remove/`` and/or ``policy-shrink/`` saved by another search
            (its checkpoint), to start from them: transfer, e.g. from a shallower teacher (the policies do
            not depend on the number of layers).
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
    cfg = N2NConfig(cost=cost, budget=dict(budget or {}), iterations=iterations, rollouts=rollouts,
                    epochs=epochs, seed=seed, **options)
    if not isinstance(teacher, nn.Module):
        raise ConfigError(f"teacher must be a torch.nn.Module, got {type(teacher).__name__}")
    for name, loader in (("train", train), ("val", val)):
        if not isinstance(loader, DataLoader):
            raise ConfigError(f"{name} must be a torch DataLoader of (inputs, targets), got {type(loader).__name__}")
        if len(loader) == 0:
            raise ConfigError(f"the {name} loader is empty; pass a loader over a non-empty dataset")
    if example_input is None:
        example_input = next(iter(train))[0][:2]
    set_seed(seed)
    work = copy.deepcopy(teacher).eval()
    try:
        with torch.no_grad():
            work(example_input)
    except Exception as e:
        raise ConfigError(f"the teacher does not run on example_input of shape {tuple(example_input.shape)} "
                          f"({type(e).__name__}: {e}); pass an example_input the model accepts") from e
    analysis = graph.analyze(work, example_input)
    if not analysis.units and not analysis.groups:
        raise UnsupportedModelError(f"N2N found nothing to remove or shrink in {type(teacher).__name__}")
    if analysis.frozen:
        kept = "; ".join(f"{root} ({why})" for root, why in analysis.frozen)
        warnings.warn(f"N2N keeps {len(analysis.frozen)} channel group(s) of {type(teacher).__name__} at full "
                      f"width: {kept}", stacklevel=2)
    sort_channels(work, example_input, analysis)
    search = _Search(work, example_input, train, val, cfg, progress, measure)
    floor = search.smallest_cost()
    for k, b in cfg.budget.items():
        if b < floor[k]:
            raise ConfigError(f"budget {{{k!r}: {b}}} cannot be met: the smallest student this search can build "
                              f"has {k} = {floor[k]:.4f} of the teacher's; raise the budget to at least that")
    state = _Checkpoint(checkpoint, cfg)
    _run_search(search, state, Path(policies) if policies is not None else None)
    return _pareto_family(search, teacher, cfg)


class _Checkpoint:
    """Search state on disk (JSON + policy/trainer weights), so a long search resumes where it stopped."""

    def __init__(self, path, cfg: N2NConfig):
        self.path = Path(path) if path is not None else None
        self.cfg = cfg
        self.data = {"stage": "remove", "iteration": 0, "best_remove": [], "cache": {}}
        if self.path is not None and (self.path / "state.json").is_file():
            self.data = json.loads((self.path / "state.json").read_text())
            if self.data.get("config") != _cfg_json(cfg):
                raise ConfigError(f"checkpoint {self.path} was written by a search with other settings; "
                                  "use a new checkpoint directory or the same settings")

    def save(self, trainers: dict[str, Reinforce], search: _Search) -> None:
        if self.path is None:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        for name, tr in trainers.items():
            tr.save(self.path / name)
            save_policy(tr.policy, self.path / f"policy-{name}")  # for transfer to another teacher
        self.data["config"] = _cfg_json(self.cfg)
        self.data["cache"] = {k: vars(s) for k, s in search.cache.items()}
        tmp = self.path / "state.json.tmp"
        tmp.write_text(json.dumps(self.data))
        os.replace(tmp, self.path / "state.json")

    def restore(self, trainers: dict[str, Reinforce], search: _Search) -> None:
        if self.path is None:
            return
        for name, tr in trainers.items():
            if (self.path / name).exists():
                tr.load(self.path / name)
        search.cache.update({k: _Student(**v) for k, v in self.data.get("cache", {}).items()})


def _cfg_json(cfg: N2NConfig) -> dict:
    return json.loads(json.dumps(vars(cfg)))


def _run_search(search: _Search, state: _Checkpoint, init: Path | None = None) -> None:
    cfg = search.cfg
    rng = torch.Generator().manual_seed(cfg.seed)
    # keep probability 0.5 at the start: biased towards keeping, the policy almost never sampled the
    # all-blocks-removed students that tight budgets need (bench/N2N_RESULTS.md)
    start = {"remove": RemovalPolicy(N_FEATURES, init_keep=0.5),
             "shrink": ShrinkPolicy(N_FEATURES, ratios=cfg.ratios)}
    for name in start:
        if init is not None and (init / f"policy-{name}").is_dir():
            start[name] = load_policy(init / f"policy-{name}")
    if init is not None and not any((init / f"policy-{n}").is_dir() for n in start):
        raise ConfigError(f"policies={str(init)!r} holds neither policy-remove/ nor policy-shrink/; pass the "
                          "checkpoint directory of an earlier n2n search")
    trainers = {name: _trainer(policy, cfg) for name, policy in start.items()}
    state.restore(trainers, search)
    if cfg.budget:
        search.anchor()  # its reward is cached: on resume nothing is trained again (costs are recounted)
    units = search.analysis.units
    stages = (["remove"] if units else []) + ["shrink"]
    total = cfg.iterations * len(stages)
    done = (stages.index(state.data["stage"]) if state.data["stage"] in stages else 0) * cfg.iterations
    bar = progress_bar(range(done + state.data["iteration"], total), enabled=search.progress, desc="n2n",
                       total=total)
    for _ in bar:
        stage = state.data["stage"] if state.data["stage"] in stages else stages[0]
        rollouts, rewards = [], []
        # the tables are fixed within a stage: the teacher's units, or the best removal's groups
        if stage == "remove":
            table, free = search.removal_table(), np.zeros(len(units), bool)
        else:
            remove = state.data["best_remove"]
            groups = search.shrink_rows(remove)
            table, free = (search.shrink_table(groups), np.zeros(len(groups), bool)) if groups else (None, None)
        for _r in range(cfg.rollouts if table is not None else 0):
            ro = trainers[stage].policy.sample(table, free, generator=rng)
            if stage == "remove":
                remove = [u for u, keep in zip(units, ro.actions) if not keep]
                levels = None  # every group at full width
            else:
                levels = [int(i) for i in ro.actions]
            rollouts.append(ro)
            rewards.append(search.score(search.fit_budget(remove, levels)).reward)
        if rollouts:
            trainers[stage].update(rollouts, rewards)
        best = max(search.cache.values(), key=lambda s: s.reward)
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(stage=stage, best_reward=f"{best.reward:.3f}", best_acc=f"{best.accuracy:.3f}",
                            best_cost=f"{best.cost.get(cfg.cost, float('nan')):.3f}")
        state.data["iteration"] += 1
        if state.data["iteration"] >= cfg.iterations and stage == "remove":
            # every student so far came from stage 1: keep the removal set of the best one
            state.data.update(stage="shrink", iteration=0, best_remove=best.arch["remove"])
        state.save(trainers, search)


def _trainer(policy: nn.Module, cfg: N2NConfig) -> Reinforce:
    """The REINFORCE trainer of one stage's policy. A small entropy bonus: plain REINFORCE became confident
    after ~40 updates on the toy envs."""
    return Reinforce(policy, lr=cfg.policy_lr, entropy_coef=0.01)


def _pareto_family(search: _Search, teacher: nn.Module, cfg: N2NConfig) -> Family:
    valid = [s for s in search.cache.values() if s.error is None and not math.isnan(s.accuracy)]
    if not valid:
        raise UnsupportedModelError("N2N found no valid student within the budget; see the warnings above")
    if cfg.rerank:  # the short proxy ranks students roughly: final-train the top few, keep the best
        front = sorted(valid, key=lambda s: -s.reward)[:cfg.rerank]
    else:
        valid.sort(key=lambda s: (s.cost[cfg.cost], -s.accuracy))
        front = _front(valid, lambda s: s.accuracy)
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
        config = {"remove": s.arch["remove"], "channels": s.arch["channels"], "search_reward": s.reward,
                  "search_accuracy": s.accuracy, "search_cost": s.cost[cfg.cost], "n2n": _cfg_json(cfg)}
        variants.append(Variant.measure(name, student, x, metrics=metrics, config=config))
    if cfg.rerank:  # the Pareto set by final validation accuracy
        variants.sort(key=lambda v: (v.config["search_cost"], -v.metrics["accuracy"]))
        variants = _front(variants, lambda v: v.metrics["accuracy"])
    source = {"params": search.teacher_cost["params"], "macs": search.teacher_cost["macs"],
              "metrics": {"accuracy": search.teacher_acc}}
    return Family(variants, method="n2n", example_input=x, source=source,
                  base=getattr(teacher, "slimkit_zoo", None))


def _front(items: list, accuracy: Callable) -> list:
    """The Pareto front of ``items`` sorted cheapest first: each one more accurate than all cheaper ones."""
    front, best = [], -1.0
    for it in items:
        if accuracy(it) > best:
            front.append(it)
            best = accuracy(it)
    return front


@register_rebuilder("n2n")
def _rebuild(base: nn.Module, config: dict, example_input: torch.Tensor) -> nn.Module:
    analysis = graph.analyze(base, example_input)
    small, _ = graph.shrink(base, example_input, analysis, keep=config["channels"], remove=config["remove"])
    return small

