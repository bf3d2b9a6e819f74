"""The student side of N2N: building students from the teacher, scoring them, the layer tables the policies
read, and the projection of sampled actions onto the budget (see :mod:`.method`)."""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from slimkit.policies import INVALID_REWARD, LAYER_TYPES, normalize_table, reward

from .. import graph
from ..cost import count_macs, count_params
from ..train import evaluate, fit
from .config import N2NConfig

__all__ = ["Student", "Search"]

@dataclass
class Student:
    """One scored student: its architecture, cost ratios to the teacher, validation accuracy and reward."""

    arch: dict
    cost: dict[str, float]       # ratio to the teacher per cost name
    accuracy: float = float("nan")
    reward: float = INVALID_REWARD
    error: str | None = None


class Search:
    """Builds, trains and scores students of one teacher; caches them by architecture.

    Args:
        teacher: the teacher with channels sorted by importance (a copy of the user's model).
        x: the example input; train, val: the loaders students are distilled on and scored on.
        config: the search's options; progress: show progress.
        measure: the user's cost function (named ``config.custom_cost``), if any.
        teacher_acc: the teacher's validation accuracy when already measured (else measured here).
    """

    def __init__(self, teacher: nn.Module, x: torch.Tensor, train: DataLoader, val: DataLoader,
                 config: N2NConfig, progress: bool, measure: Callable[[nn.Module], float] | None = None,
                 teacher_acc: float | None = None):
        self.teacher = teacher  # channels already sorted by importance (a copy of the user's model)
        self.x, self.train, self.val, self.cfg, self.progress = x, train, val, config, progress
        self.measure = measure  # the user's cost function, named config.custom_cost
        self.analysis = graph.analyze(teacher, x)
        self.teacher_cost = self._absolute(teacher)
        self.teacher_acc = evaluate(teacher, val)["accuracy"] if teacher_acc is None else teacher_acc
        self.cache: dict[str, Student] = {}
        self.costs: dict[str, dict[str, float]] = {}

    # -- architectures ----------------------------------------------------------------------------------
    @staticmethod
    def key(arch: dict) -> str:
        """A short stable hash of an architecture: the cache key of its student."""
        return hashlib.sha1(json.dumps(arch, sort_keys=True).encode()).hexdigest()[:16]

    def build(self, arch: dict) -> nn.Module:
        """The student of ``arch``: the teacher shrunk to it, the kept weights copied from the teacher."""
        small, index_map = graph.shrink(self.teacher, self.x, self.analysis, keep=arch["channels"],
                                        remove=arch["remove"])
        state = self.teacher.state_dict()
        small.load_state_dict({n: graph.take(state[n], spec).clone() for n, spec in index_map.items()},
                              strict=False)
        return small

    def score(self, arch: dict) -> Student:
        """Distil and score the student of ``arch`` (cached under :meth:`key`)."""
        k = self.key(arch)
        if k in self.cache:
            return self.cache[k]
        try:
            student = self.build(arch)
        except Exception as e:  # an invalid sampled student scores -1; the search goes on
            st = Student(arch, {}, error=f"{type(e).__name__}: {e}")
            self.cache[k] = st
            return st
        cost = self._cost(student)
        self.costs[k] = cost
        st = Student(arch, cost)
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
        """The removal policy's input: one normalised feature row per removable unit."""
        rows, n = [], len(self.analysis.units)
        for i, name in enumerate(self.analysis.units):
            unit = self.teacher.get_submodule(name)
            rows.append(_row(unit, position=(i, i + 1), total=max(n, 1)))
        return normalize_table(np.array(rows, dtype=np.float64))

    def shrink_rows(self, remove: list[str]) -> list[graph.ChannelGroup]:
        """The channel groups still present once the units in ``remove`` are gone."""
        gone = tuple(u + "." for u in remove)
        return [g for g in self.analysis.groups
                if any(not (s + ".").startswith(gone) and s not in remove for s in g.sources)]

    def shrink_table(self, groups: list[graph.ChannelGroup]) -> np.ndarray:
        """The shrink policy's input: one normalised feature row per channel group."""
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
            g.root: g.keep(self.cfg.ratios[i], self.cfg.round_to) for g, i in zip(groups, levels) if i < top}}

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
        ratio by the fewest equal steps that make the student fit; then, with ``fill``, widen it again to
        exact channel counts that use up the budget (:meth:`fill_budget`). The policy is still credited
        with the action it sampled; the reward is that of the student actually built."""
        arch = self._project(remove, levels)
        if not (self.cfg.fill and self.cfg.budget):
            return arch
        groups = self.shrink_rows(remove)
        levels = [len(self.cfg.ratios) - 1] * len(groups) if levels is None else levels
        shape = {g.root: self.cfg.ratios[i] for g, i in zip(groups, levels)}
        return self.fill_budget(arch["remove"], shape) or arch

    def fill_budget(self, remove: list[str], shape: dict[str, float]) -> dict | None:
        """The sampled widths ``shape`` (group root -> fraction; missing: 1.0) scaled by the largest common
        factor that fits the budget, at exact channel counts (whole heads), like AMC's budget-meeting
        final layers. All groups at one fraction give uniform width shrinking. None if nothing fits."""
        groups = self.shrink_rows(remove)
        fracs = [shape.get(g.root, 1.0) for g in groups]

        def at(s: float) -> dict:
            return {"remove": list(remove), "channels": {g.root: k for g, f in zip(groups, fracs)
                                                         if (k := g.keep(min(1.0, f * s), 1)) < g.size}}

        hi = 1.0 / min(fracs, default=1.0)
        try:
            if self.fits(at(hi)):
                return at(hi)
            lo = 0.0
            if not self.fits(at(lo)):
                return None
            for _ in range(14):  # bisection on the common factor; cost_of memoises repeats
                mid = (lo + hi) / 2
                lo, hi = (mid, hi) if self.fits(at(mid)) else (lo, mid)
        except Exception:
            return None  # invalid: the projected student stands
        return at(lo)

    def anchor(self) -> Student:
        """AMC-style warm start: score the budget-meeting uniformly shrunk student (nothing removed, every
        group at the same exact width) before the search samples anything."""
        return self.score(self.fit_budget([], None))

    def _project(self, remove: list[str], levels: list[int] | None) -> dict:
        groups = self.shrink_rows(remove)
        top = len(self.cfg.ratios) - 1
        levels = [top] * len(groups) if levels is None else list(levels)
        arch = self.arch(remove, levels)
        if not self.cfg.budget:
            return arch
        for step in range(top + 1):
            arch = self.arch(remove, [max(0, i - step) for i in levels])
            try:
                if self.fits(arch):
                    return arch
            except Exception:
                return arch  # invalid: score() reports it
        # still over at the smallest ratios: also remove units, the largest first, until it fits
        params = {u: sum(p.numel() for p in self.teacher.get_submodule(u).parameters())
                  for u in self.analysis.units if u not in remove}
        remove = list(remove)
        for unit in sorted(params, key=params.get, reverse=True):
            remove.append(unit)
            arch = self.arch(remove, [0] * len(self.shrink_rows(remove)))
            try:
                if self.fits(arch):
                    return arch
            except Exception:
                return arch
        return arch  # over budget even so (smallest_cost() refuses such budgets up front)

    def fits(self, arch: dict) -> bool:
        """Whether ``arch`` meets every limit of the budget."""
        cost = self.cost_of(arch)
        return all(cost[n] <= b for n, b in self.cfg.budget.items())

    def smallest_cost(self) -> dict[str, float]:
        """Cost fractions of the smallest student the search can build: the floor of any budget."""
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
