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

A ``budget`` such as ``{"params": 0.2}`` is a hard limit: students over it are never trained or returned
(during the search they score below every valid student, by how far they overshoot).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from slimkit.policies import (
    INVALID_REWARD,
    LAYER_TYPES,
    N_FEATURES,
    Reinforce,
    RemovalPolicy,
    ShrinkPolicy,
    load_policy,
    normalize_table,
    reward,
    save_policy,
)
from slimkit.runtime.errors import ConfigError, UnsupportedModelError

from . import graph
from .cost import count_macs, count_params
from .family import Family, Variant, register_rebuilder
from .reorder import sort_channels
from .train import evaluate, fit, progress_bar, set_seed

__all__ = ["n2n", "N2NConfig", "COSTS"]

COSTS = ("params", "macs")
RATIOS = (0.25, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


@dataclass
class N2NConfig:
    """Options of :func:`n2n` (stored with every variant as its recipe)."""

    cost: str = "params"
    budget: dict[str, float] = field(default_factory=dict)
    custom_cost: str = ""  # the name of a user cost function (e.g. "latency"), when one is given
    iterations: int = 10
    rollouts: int = 5
    epochs: int = 1
    final_epochs: int = 5
    max_variants: int = 6
    ratios: tuple[float, ...] = RATIOS
    lr: float = 3e-3
    policy_lr: float = 3e-3
    seed: int = 0
    version: int = 1

    def __post_init__(self):
        names = COSTS + ((self.custom_cost,) if self.custom_cost else ())
        if self.cost not in names:
            raise ConfigError(f"cost={self.cost!r} is not one of {names}; or pass a callable module -> cost, "
                              "e.g. slimkit.export.latency_cost(example_input)")
        if not isinstance(self.budget, dict):
            raise ConfigError(f"budget must be a dict such as {{'params': 0.2}}, got {self.budget!r}")
        for k, v in self.budget.items():
            if k not in names or isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 1:
                raise ConfigError(f"budget {{{k!r}: {v!r}}}: keys must be in {names} and values fractions of "
                                  "the teacher's cost in (0, 1], e.g. {'params': 0.2}")
        for name in ("iterations", "rollouts", "final_epochs", "max_variants"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name} must be an int >= 1, got {v!r}")
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 0:
            raise ConfigError(f"epochs must be an int >= 0, got {self.epochs!r}")
        self.ratios = tuple(sorted(float(r) for r in self.ratios))
        if not self.ratios or self.ratios[-1] != 1.0 or self.ratios[0] <= 0:
            raise ConfigError(f"ratios must be fractions in (0, 1] that include 1.0, got {self.ratios}")


@dataclass
class _Student:
    arch: dict
    cost: dict[str, float]       # ratio to the teacher per cost name
    accuracy: float = float("nan")
    reward: float = INVALID_REWARD
    error: str | None = None


class _Search:
    """Builds, trains and scores students of one teacher; caches them by architecture."""

    def __init__(self, teacher: nn.Module, x: torch.Tensor, train: DataLoader, val: DataLoader,
                 config: N2NConfig, progress: bool, measure: Callable[[nn.Module], float] | None = None):
        self.teacher = teacher  # channels already sorted by importance (a copy of the user's model)
        self.x, self.train, self.val, self.cfg, self.progress = x, train, val, config, progress
        self.measure = measure  # the user's cost function, named config.custom_cost
        self.analysis = graph.analyze(teacher, x)
        self.teacher_cost = self._absolute(teacher)
        self.teacher_acc = evaluate(teacher, val)["accuracy"]
        self.cache: dict[str, _Student] = {}
        self.costs: dict[str, dict[str, float]] = {}

    # -- architectures ----------------------------------------------------------------------------------
    @staticmethod
    def key(arch: dict) -> str:
        return hashlib.sha1(json.dumps(arch, sort_keys=True).encode()).hexdigest()[:16]

    def build(self, arch: dict) -> nn.Module:
        small, index_map = graph.shrink(self.teacher, self.x, self.analysis, keep=arch["channels"],
                                        remove=arch["remove"])
        state = self.teacher.state_dict()
        small.load_state_dict({n: graph.take(state[n], spec).clone() for n, spec in index_map.items()},
                              strict=False)
        return small

    def score(self, arch: dict) -> _Student:
        k = self.key(arch)
        if k in self.cache:
            return self.cache[k]
        try:
            student = self.build(arch)
        except Exception as e:  # an invalid sampled student scores -1; the search goes on
            st = _Student(arch, {}, error=f"{type(e).__name__}: {e}")
            self.cache[k] = st
            return st
        cost = self._cost(student)
        self.costs[k] = cost
        st = _Student(arch, cost)
        over = max((cost[n] / b for n, b in self.cfg.budget.items()), default=0.0)
        if over > 1.0:  # over budget: never trained, scored below every valid student
            st.reward = max(INVALID_REWARD, -min(1.0, over - 1.0))
        else:
            try:
                if self.cfg.epochs:
                    fit(student, self.train, epochs=self.cfg.epochs, lr=self.cfg.lr, teacher=self.teacher,
                        progress=False, seed=self.cfg.seed)
                st.accuracy = evaluate(student, self.val)["accuracy"]
                st.reward = reward(cost[self.cfg.cost], st.accuracy, self.teacher_acc)
            except Exception as e:  # a crash inside one student's training is reported, not fatal
                st.error = f"{type(e).__name__}: {e}"
                warnings.warn(f"N2N student {k} failed to train and scores {INVALID_REWARD}: {st.error}",
                              stacklevel=2)
        self.cache[k] = st
        return st

    # -- layer tables ----------------------------------------------------------------------------------
    def removal_table(self) -> np.ndarray:
        rows, n = [], len(self.analysis.units)
        for i, name in enumerate(self.analysis.units):
            unit = self.teacher.get_submodule(name)
            rows.append(_row(unit, position=(i, i + 1), total=max(n, 1)))
        return normalize_table(np.array(rows, dtype=np.float64))

    def shrink_rows(self, remove: list[str]) -> list[graph.ChannelGroup]:
        gone = tuple(u + "." for u in remove)
        return [g for g in self.analysis.groups
                if any(not (s + ".").startswith(gone) and s not in remove for s in g.sources)]

    def shrink_table(self, groups: list[graph.ChannelGroup]) -> np.ndarray:
        order = {n: i for i, (n, _) in enumerate(self.teacher.named_modules())}
        total = max(len(order), 1)
        rows = []
        for g in groups:
            root = self.teacher.get_submodule(g.root)
            first = min(order[m] for m in g.members if m in order)
            last = max(order[m] for m in g.members if m in order)
            rows.append(_row(root, position=(first, last), total=total, outputs=g.size))
        return normalize_table(np.array(rows, dtype=np.float64))

    def arch(self, remove: list[str], levels: list[int] | None) -> dict:
        """An architecture from removed units and one ratio index per remaining group (None: all 1.0)."""
        groups = self.shrink_rows(remove)
        top = len(self.cfg.ratios) - 1
        levels = [top] * len(groups) if levels is None else levels
        return {"remove": list(remove), "channels": {
            g.root: g.keep(self.cfg.ratios[i]) for g, i in zip(groups, levels) if i < top}}

    def _absolute(self, module: nn.Module, measure: bool = True) -> dict[str, float]:
        cost = {"params": count_params(module), "macs": count_macs(module, self.x)}
        if measure and self.measure is not None:
            cost[self.cfg.custom_cost] = float(self.measure(module))
        return cost

    def _cost(self, student: nn.Module, measure: bool = True) -> dict[str, float]:
        return {k: v / self.teacher_cost[k] for k, v in self._absolute(student, measure).items()}

    def cost_of(self, arch: dict) -> dict[str, float]:
        """Cost ratios of an architecture to the teacher, as far as the budget needs them (memoised:
        projection asks for many; a measured cost such as latency is taken only if the budget names it)."""
        k = self.key(arch)
        if k not in self.costs:
            self.costs[k] = self._cost(self.build(arch), measure=self.cfg.custom_cost in self.cfg.budget)
        return self.costs[k]

    def fit_budget(self, remove: list[str], levels: list[int] | None) -> dict:
        """Project a sampled action onto the budget, like AMC's action clipping: lower every group's
        ratio by the fewest equal steps that make the student fit. The policy is still credited with
        the action it sampled; the reward is that of the student actually built."""
        groups = self.shrink_rows(remove)
        top = len(self.cfg.ratios) - 1
        levels = [top] * len(groups) if levels is None else list(levels)
        arch = self.arch(remove, levels)
        if not self.cfg.budget:
            return arch
        for step in range(top + 1):
            arch = self.arch(remove, [max(0, i - step) for i in levels])
            try:
                cost = self.cost_of(arch)
            except Exception:
                return arch  # invalid: score() reports it
            if all(cost[n] <= b for n, b in self.cfg.budget.items()):
                return arch
        return arch  # still over budget at the smallest ratios: score() ranks it below valid students

    def smallest_cost(self) -> dict[str, float]:
        remove = list(self.analysis.units)
        return self.cost_of(self.arch(remove, [0] * len(self.shrink_rows(remove))))


def _row(module: nn.Module, *, position: tuple[int, int], total: int, outputs: int | None = None) -> list[float]:
    """One raw layer-table row: (type, kernel, stride, padding, outputs, skip_start, skip_end, params)."""
    leaves = [m for m in module.modules() if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))]
    first = leaves[0] if leaves else module
    if isinstance(module, nn.modules.conv._ConvNd):
        kind = "conv"
    elif isinstance(module, nn.Linear):
        kind = "linear"
    elif any(hasattr(m, "head_dim") or hasattr(m, "num_heads") for m in module.modules()):
        kind = "attention"
    else:
        kind = "block" if len(leaves) > 1 else "other"
    kernel = float(np.prod(getattr(first, "kernel_size", (1,))))
    stride = float(np.prod(getattr(first, "stride", (1,))))
    padding = getattr(first, "padding", (0,))
    padding = float(np.prod(padding)) if isinstance(padding, tuple) else 0.0
    if outputs is None:
        last = leaves[-1] if leaves else module
        outputs = getattr(last, "out_channels", getattr(last, "out_features", 0))
    params = sum(p.numel() for p in module.parameters())
    return [LAYER_TYPES.index(kind), kernel, stride, padding, float(outputs),
            position[0] / total, position[1] / total, math.log1p(params)]


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
        **options: the rest of :class:`N2NConfig` (``final_epochs``, ``ratios``, ``max_variants``, ...).

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
    start = {"remove": RemovalPolicy(N_FEATURES), "shrink": ShrinkPolicy(N_FEATURES, ratios=cfg.ratios)}
    for name in start:
        if init is not None and (init / f"policy-{name}").is_dir():
            start[name] = load_policy(init / f"policy-{name}")
    if init is not None and not any((init / f"policy-{n}").is_dir() for n in start):
        raise ConfigError(f"policies={str(init)!r} holds neither policy-remove/ nor policy-shrink/; pass the "
                          "checkpoint directory of an earlier n2n search")
    # a small entropy bonus: plain REINFORCE became confident after ~40 updates on the toy envs
    trainers = {name: Reinforce(policy, lr=cfg.policy_lr, entropy_coef=0.01) for name, policy in start.items()}
    state.restore(trainers, search)
    units = search.analysis.units
    stages = (["remove"] if units else []) + ["shrink"]
    total = cfg.iterations * len(stages)
    done = (stages.index(state.data["stage"]) if state.data["stage"] in stages else 0) * cfg.iterations
    bar = progress_bar(range(done + state.data["iteration"], total), enabled=search.progress, desc="n2n",
                       total=total)
    for _ in bar:
        stage = state.data["stage"] if state.data["stage"] in stages else stages[0]
        rollouts, rewards = [], []
        for _r in range(cfg.rollouts):
            if stage == "remove":
                table = search.removal_table()
                ro = trainers["remove"].policy.sample(table, np.zeros(len(units), bool), generator=rng)
                remove = [u for u, keep in zip(units, ro.actions) if not keep]
                levels = None  # every group at full width
            else:
                remove = state.data["best_remove"]
                groups = search.shrink_rows(remove)
                if not groups:
                    break
                ro = trainers["shrink"].policy.sample(search.shrink_table(groups), np.zeros(len(groups), bool),
                                                      generator=rng)
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


def _pareto_family(search: _Search, teacher: nn.Module, cfg: N2NConfig) -> Family:
    valid = [s for s in search.cache.values() if s.error is None and not math.isnan(s.accuracy)]
    if not valid:
        raise UnsupportedModelError("N2N found no valid student within the budget; see the warnings above")
    valid.sort(key=lambda s: (s.cost[cfg.cost], -s.accuracy))
    front, best_acc = [], -1.0
    for s in valid:
        if s.accuracy > best_acc:
            front.append(s)
            best_acc = s.accuracy
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
        config = {"remove": s.arch["remove"], "channels": s.arch["channels"], "search_reward": s.reward,
                  "n2n": _cfg_json(cfg)}
        variants.append(Variant.measure(name, student, x, metrics=metrics, config=config))
    source = {"params": search.teacher_cost["params"], "macs": search.teacher_cost["macs"],
              "metrics": {"accuracy": search.teacher_acc}}
    return Family(variants, method="n2n", example_input=x, source=source,
                  base=getattr(teacher, "slimkit_zoo", None))


@register_rebuilder("n2n")
def _rebuild(base: nn.Module, config: dict, example_input: torch.Tensor) -> nn.Module:
    analysis = graph.analyze(base, example_input)
    small, _ = graph.shrink(base, example_input, analysis, keep=config["channels"], remove=config["remove"])
    return small

