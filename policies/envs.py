"""Gymnasium environments for N2N's two stages: one step = one student architecture.

``LayerRemovalEnv`` (stage 1) and ``LayerShrinkEnv`` (stage 2) observe the normalised layer table and
score an action with an injected evaluator (``slimkit.compress.n2n`` passes one that builds, distils and
scores the student). Episodes last one step, as in N2N (Ashok et al., arXiv 1709.06030) where a whole
action sequence is one architecture and only the finished student is rewarded.

Without arguments each env is a self-contained toy: a built-in residual CNN teacher
(:func:`toy_teacher`) and an analytic evaluator (:class:`ToyEvaluator`) that runs in microseconds, so
any RL library can be tried on it.

Making an env (``gymnasium.make`` kwargs go to the constructor)::

    import gymnasium
    import slimkit.policies                      # registers the ids
    env = gymnasium.make("slimkit/LayerRemoval-v0")
    env = gymnasium.make("slimkit/LayerShrink-v0", table=raw, fixed=mask, evaluator=fn)

    # without importing slimkit first: gymnasium's "module:env_id" form imports the module, whose
    # import registers the ids (gymnasium >= 0.26, checked on 1.4; gymnasium 1.x dropped the old
    # entry-point plugin discovery, so the import is required one way or the other)
    env = gymnasium.make("slimkit.policies:slimkit/LayerRemoval-v0")
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from slimkit.runtime.errors import ConfigError

from .nets import DEFAULT_RATIOS, check_ratios
from .table import INVALID_REWARD, LAYER_FEATURES, N_FEATURES, check_table, normalize_table, reward, type_id

__all__ = ["LayerRemovalEnv", "LayerShrinkEnv", "ToyEvaluator", "toy_teacher", "REMOVAL_ID", "SHRINK_ID"]

REMOVAL_ID = "slimkit/LayerRemoval-v0"
SHRINK_ID = "slimkit/LayerShrink-v0"

Evaluator = Callable[[np.ndarray], "float | tuple[float, dict[str, Any]]"]
_PARAMS = LAYER_FEATURES.index("params")


def toy_teacher(blocks: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A small residual 1-D CNN teacher as a raw layer table (``blocks + 5`` rows).

    Rows: stem conv (k5), its norm, ``blocks`` residual blocks (two k3 convs + norms each; every odd
    block doubles the width with stride 2 and a 1x1 projection), global pooling, a hidden linear and the
    classifier. Forced keeps follow N2N: first and last rows, shape-changing (strided) blocks and the
    pooling; identity blocks, the norm and the hidden linear are removable.

    Args:
        blocks: number of residual blocks (>= 1).

    Returns:
        ``(raw_table, forced_keep, importance)``: float (L, N_FEATURES), bool (L,) and float (L,) (how
        much accuracy each row carries, used by :class:`ToyEvaluator`).
    """
    if blocks < 1:
        raise ConfigError(f"blocks must be >= 1; got {blocks}")
    rows: list[list[float]] = []
    forced: list[bool] = []
    importance: list[float] = []

    def row(kind: str, k: int, s: int, p: int, out: int, params: int, keep: bool, imp: float,
            skip: tuple[int, int] = (0, 0)) -> None:
        rows.append([type_id(kind), k, s, p, out, skip[0], skip[1], params])
        forced.append(keep)
        importance.append(imp)

    width = 32
    row("conv", 5, 1, 2, width, 1 * width * 5 + width, True, 0.6)
    row("norm", 0, 0, 0, width, 2 * width, False, 0.08)
    for b in range(blocks):
        down = b % 2 == 1
        w_in, width = width, width * 2 if down else width
        params = (w_in * width * 3 + width) + (width * width * 3 + width) + 4 * width
        params += (w_in * width + width) if down else 0
        idx = len(rows)
        # later identity blocks carry less (the usual finding for deep ResNets)
        row("block", 3, 2 if down else 1, 1, width, params, down, 0.5 if down else 0.25 / (1 + b),
            skip=(idx, idx + 1))
    row("other", 0, 0, 0, width, 0, True, 0.3)
    row("linear", 0, 0, 0, 64, width * 64 + 64, False, 0.15)
    row("linear", 0, 0, 0, 10, 64 * 10 + 10, True, 0.6)
    return np.asarray(rows, dtype=np.float64), np.asarray(forced), np.asarray(importance)


class ToyEvaluator:
    """Cheap analytic stand-in for "build the student, distil it, measure validation accuracy".

    Cost = parameter ratio. A removed row costs nothing; a row shrunk to width ratio ``r`` after a row
    shrunk to ``r_prev`` keeps ``r * r_prev`` of its parameters (norm rows: ``r``). Accuracy decays
    smoothly with the damage done: ``acc = chance + (acc_t - chance) * exp(-damage)``, where removing row
    ``i`` adds ``importance_i`` and shrinking it adds ``4 * importance_i * (1 - r)^2``. The reward is
    :func:`~slimkit.policies.table.reward`. Made-up but sensible: the best students drop the
    unimportant big blocks and shrink moderately.

    Args:
        raw: raw layer table (L, N_FEATURES).
        importance: float (L,) >= 0.
        acc_teacher: teacher accuracy; ``chance``: accuracy of a useless student.
    """

    def __init__(self, raw: np.ndarray, importance: np.ndarray, *, acc_teacher: float = 0.95,
                 chance: float = 0.1) -> None:
        self.raw = check_table(raw)
        self.importance = np.asarray(importance, dtype=np.float64)
        if self.importance.shape != (len(self.raw),) or (self.importance < 0).any():
            raise ConfigError(f"importance must be {len(self.raw)} values >= 0; got {self.importance!r}")
        self.params = self.raw[:, _PARAMS]
        if self.params.sum() <= 0:
            raise ConfigError("the table's params column sums to 0; the toy cost needs parameter counts")
        self.acc_teacher, self.chance = acc_teacher, chance
        self.is_norm = self.raw[:, 0] == type_id("norm")

    def _score(self, kept_frac: np.ndarray, damage: float) -> tuple[float, dict[str, Any]]:
        cost_ratio = float((self.params * kept_frac).sum() / self.params.sum())
        acc = self.chance + (self.acc_teacher - self.chance) * float(np.exp(-damage))
        if cost_ratio <= 0:
            return INVALID_REWARD, {"cost_ratio": cost_ratio, "accuracy": acc}
        return reward(cost_ratio, acc, self.acc_teacher), {"cost_ratio": cost_ratio, "accuracy": acc}

    def removal(self, keep: np.ndarray) -> tuple[float, dict[str, Any]]:
        """Score a keep mask (1 = keep) -> ``(reward, {"cost_ratio", "accuracy"})``."""
        keep = np.asarray(keep).astype(bool)
        return self._score(keep.astype(np.float64), float(self.importance[~keep].sum()))

    def shrink(self, ratios: np.ndarray) -> tuple[float, dict[str, Any]]:
        """Score per-row width ratios -> ``(reward, {"cost_ratio", "accuracy"})``."""
        r = np.asarray(ratios, dtype=np.float64)
        r_prev = np.concatenate([[1.0], r[:-1]])
        frac = np.where(self.is_norm, r, r * r_prev)
        return self._score(frac, float((4.0 * self.importance * (1.0 - r) ** 2).sum()))


def _setup(table: np.ndarray | None, mask: np.ndarray | None, evaluator: Evaluator | None,
           mask_name: str, stage: str) -> tuple[np.ndarray, np.ndarray, Evaluator]:
    if table is None:
        if mask is not None or evaluator is not None:
            raise ConfigError(f"{mask_name}/evaluator need a table: pass table= too, "
                              "or nothing for the toy")
        raw, forced, importance = toy_teacher()
        toy = ToyEvaluator(raw, importance)
        if stage == "shrink":  # the pooling row has no width to shrink; the classifier keeps its classes
            forced = raw[:, _PARAMS] == 0
            forced[-1] = True
        return raw, forced, getattr(toy, stage)
    raw = check_table(table)
    if evaluator is None or not callable(evaluator):
        raise ConfigError(f"a custom table needs an evaluator callable (action -> reward); got {evaluator!r}")
    if mask is None:
        mask = np.zeros(len(raw), dtype=bool)
    mask = np.asarray(mask)
    if mask.shape != (len(raw),):
        raise ConfigError(f"{mask_name} must have shape ({len(raw)},), one bool per table row; "
                          f"got {mask.shape}")
    return raw, mask.astype(bool), evaluator


def _call(evaluator: Evaluator, arg: np.ndarray) -> tuple[float, dict[str, Any]]:
    out = evaluator(arg)
    if isinstance(out, tuple):
        value, info = out
        return float(value), dict(info)
    return float(out), {}


class _TableEnv(gym.Env):
    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, raw: np.ndarray) -> None:
        self.raw = raw
        self.table = normalize_table(raw)
        self.observation_space = spaces.Box(0.0, 1.0, shape=(len(raw), N_FEATURES), dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        return self.table.copy(), {}

    def _check_action(self, action: Any) -> np.ndarray:
        arr = np.asarray(action)
        if arr.shape != self.action_space.shape or not self.action_space.contains(
                arr.astype(self.action_space.dtype)):
            raise ConfigError(f"action must lie in {self.action_space}; got {action!r}")
        return arr.astype(self.action_space.dtype)


class LayerRemovalEnv(_TableEnv):
    """N2N stage 1 as a one-step gymnasium env (Ashok et al., arXiv 1709.06030).

    Observation: the normalised layer table, ``Box(0, 1, (L, N_FEATURES), float32)``. Action: a keep
    mask, ``MultiBinary(L)``; forced rows are set to 1 before evaluation. Reward: ``evaluator(keep_mask)``
    (a float, or ``(float, info_dict)`` whose dict is merged into ``info``). Every episode terminates
    after one step; ``info["action"]`` is the effective mask.

    Args:
        table: raw layer table (L, N_FEATURES); None for the built-in toy teacher.
        forced_keep: bool (L,) rows that must stay.
        evaluator: callable int8 keep mask -> reward; required with a custom table.
    """

    def __init__(self, table: np.ndarray | None = None, forced_keep: np.ndarray | None = None,
                 evaluator: Evaluator | None = None) -> None:
        raw, self.forced_keep, self.evaluator = _setup(table, forced_keep, evaluator, "forced_keep",
                                                       "removal")
        super().__init__(raw)
        self.action_space = spaces.MultiBinary(len(raw))

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Score the keep mask ``action`` (forced rows kept); the episode ends after this one step."""
        keep = self._check_action(action).astype(np.int8)
        keep[self.forced_keep] = 1
        value, info = _call(self.evaluator, keep)
        return self.table.copy(), value, True, False, {**info, "action": keep}


class LayerShrinkEnv(_TableEnv):
    """N2N stage 2 as a one-step gymnasium env (Ashok et al., arXiv 1709.06030).

    Observation: the normalised layer table. Action: one index into ``ratios`` per row,
    ``MultiDiscrete([len(ratios)] * L)``; fixed rows are set to the index of 1.0. Reward:
    ``evaluator(ratio_values)`` with a float array of the chosen width ratios. One step per episode;
    ``info["action"]`` holds the effective indices and ``info["ratios"]`` their values.

    Args:
        table: raw layer table; None for the toy teacher (all its rows; N2N shrinks the kept ones).
        fixed: bool (L,) rows that keep ratio 1.0.
        evaluator: callable ratio values -> reward; required with a custom table.
        ratios: the width menu, distinct values in (0, 1] including 1.0.
    """

    def __init__(self, table: np.ndarray | None = None, fixed: np.ndarray | None = None,
                 evaluator: Evaluator | None = None, ratios: tuple[float, ...] = DEFAULT_RATIOS) -> None:
        self.ratios = check_ratios(ratios)
        raw, self.fixed, self.evaluator = _setup(table, fixed, evaluator, "fixed", "shrink")
        super().__init__(raw)
        self.action_space = spaces.MultiDiscrete([len(self.ratios)] * len(raw))

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Score the ratio choices ``action`` (fixed rows at 1.0); the episode ends after this one step."""
        idx = self._check_action(action).astype(np.int64)
        idx[self.fixed] = self.ratios.index(1.0)
        values = np.asarray(self.ratios, dtype=np.float64)[idx]
        value, info = _call(self.evaluator, values)
        return self.table.copy(), value, True, False, {**info, "action": idx, "ratios": values}


def register_envs() -> None:
    """Register the two ids with gymnasium (idempotent; ``import slimkit.policies`` calls it)."""
    for env_id, cls in ((REMOVAL_ID, "LayerRemovalEnv"), (SHRINK_ID, "LayerShrinkEnv")):
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=f"slimkit.policies.envs:{cls}")
