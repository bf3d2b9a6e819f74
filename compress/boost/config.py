"""``BoostConfig``: the options of :func:`slimkit.compress.boost` (see :mod:`.method`)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from slimkit.runtime.errors import ConfigError

from ..config import MethodConfig, check_choice, check_fraction, check_int
from ..train import TASKS

__all__ = ["BoostConfig", "ACTIVATIONS"]

ACTIVATIONS = {"tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "relu": nn.ReLU}


@dataclass
class BoostConfig(MethodConfig):
    """Options of :func:`~slimkit.compress.boost` (a JSON-serialisable recipe, stored with every variant).

    Attributes:
        stages: boosting steps T; the merged layer has ``stages * units`` hidden units.
        units: hidden units J of each step's net.
        shrinkage: learning rate in (0, 1] applied to each Newton step.
        subsample: fraction of the training rows, in (0, 1], each step's net is fitted on.
        task: ``"classification"`` (softmax cross-entropy) or ``"regression"`` (MSE).
        activation: hidden activation, one of :data:`ACTIVATIONS`.
        max_iter: L-BFGS iterations per step.
        l2: L2 penalty on each step's weights, scaled like scikit-learn's ``alpha`` (``l2 / 2n * |W|^2``).
        head: qualified name of the replaced ``nn.Linear`` (None: the last Linear that runs).
        stage_counts: the stage counts kept as variants (None: every count 1..stages).
        seed: seeds initialisation and subsampling.
    """

    METHOD = "boost"
    VERSION = 1

    stages: int = 10
    units: int = 8
    shrinkage: float = 0.3
    subsample: float = 0.5
    task: str = "classification"
    activation: str = "tanh"
    max_iter: int = 200
    l2: float = 1.0
    head: str | None = None
    stage_counts: tuple[int, ...] | None = None
    seed: int = 0

    def validate(self) -> None:
        """Refuse bad boosting options with a ConfigError naming the option."""
        for name in ("stages", "units", "max_iter"):
            check_int(name, getattr(self, name), 1)
        check_fraction("shrinkage", self.shrinkage)
        check_fraction("subsample", self.subsample)
        check_choice("task", self.task, TASKS)
        check_choice("activation", self.activation, tuple(ACTIVATIONS))
        if isinstance(self.l2, bool) or not isinstance(self.l2, (int, float)) or self.l2 < 0:
            raise ConfigError(f"l2 must be a number >= 0, got {self.l2!r}")
        if self.head is not None and not isinstance(self.head, str):
            raise ConfigError(f"head must be a module name (str) or None, got {self.head!r}")
        if self.stage_counts is not None:
            self.stage_counts = _stage_counts(self.stage_counts, self.stages)

    @property
    def counts(self) -> tuple[int, ...]:
        """The stage counts kept as variants."""
        return self.stage_counts or tuple(range(1, self.stages + 1))


def _stage_counts(counts, stages: int) -> tuple[int, ...]:
    if counts is None:
        return tuple(range(1, stages + 1))
    given = counts
    try:
        counts = tuple(counts)
        out = tuple(sorted({int(c) for c in counts if not isinstance(c, bool) and int(c) == c}))
    except (TypeError, ValueError):
        out = ()
    if not out or len(out) != len(counts) or not all(1 <= c <= stages for c in out):
        raise ConfigError(f"stage_counts must be distinct ints in 1..stages={stages}, got {given!r}")
    return out
