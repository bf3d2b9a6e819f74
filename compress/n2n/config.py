"""``N2NConfig``: the options of :func:`slimkit.compress.n2n` (see :mod:`.method`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from slimkit.policies.reinforce import DEFAULT_LR
from slimkit.runtime.errors import ConfigError

from ..config import MethodConfig, check_bool, check_choice, check_int

__all__ = ["N2NConfig", "COSTS", "RATIOS"]

COSTS = ("params", "macs")
RATIOS = (0.25, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


@dataclass
class N2NConfig(MethodConfig):
    """Options of :func:`~slimkit.compress.n2n` (stored with every variant as its recipe).

    Attributes:
        cost: what the reward's compression term counts: ``"params"``, ``"macs"`` or ``custom_cost``.
        budget: hard limits as fractions of the teacher's cost, e.g. ``{"params": 0.2}``.
        custom_cost: the name of a user cost function (e.g. ``"latency"``), when one is given.
        iterations: policy updates per stage.
        rollouts: students sampled per policy update.
        epochs: distillation epochs per sampled student (short: weights are inherited).
        final_epochs: distillation epochs of each returned student.
        max_variants: at most this many students in the returned Pareto family.
        ratios: the width ratios the shrink policy picks from (must include 1.0).
        round_to: channel counts are multiples of this (groups smaller than 2x it: any count).
        fill: after projection, widen the sampled shape to exact channel counts that use up the budget.
        rerank: >0: final-train this many best students by search reward and return their Pareto set.
        lr: learning rate of the students' distillation.
        policy_lr: learning rate of the REINFORCE policies (why this value: slimkit.policies.reinforce).
        seed: seeds everything.
    """

    METHOD = "n2n"
    VERSION = 1

    cost: str = "params"
    budget: dict[str, float] = field(default_factory=dict)
    custom_cost: str = ""
    iterations: int = 10
    rollouts: int = 5
    epochs: int = 1
    final_epochs: int = 5
    max_variants: int = 6
    ratios: tuple[float, ...] = RATIOS
    round_to: int = 8
    fill: bool = True
    rerank: int = 0
    lr: float = 3e-3
    policy_lr: float = DEFAULT_LR
    seed: int = 0

    def validate(self) -> None:
        """Refuse bad N2N options (cost, budget keys and fractions, ratios, counts) with a ConfigError."""
        names = COSTS + ((self.custom_cost,) if self.custom_cost else ())
        check_choice("cost", self.cost, names, "or pass a callable module -> cost, "
                     "e.g. slimkit.export.latency_cost(example_input)")
        if not isinstance(self.budget, dict):
            raise ConfigError(f"budget must be a dict such as {{'params': 0.2}}, got {self.budget!r}")
        for k, v in self.budget.items():
            if k not in names or isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 1:
                raise ConfigError(f"budget {{{k!r}: {v!r}}}: keys must be in {names} and values fractions of "
                                  "the teacher's cost in (0, 1], e.g. {'params': 0.2}")
        check_bool("fill", self.fill)
        if isinstance(self.rerank, bool) or not isinstance(self.rerank, int) or self.rerank < 0:
            raise ConfigError(f"rerank must be an int >= 0 (0: final-train the Pareto spread), got {self.rerank!r}")
        for name in ("iterations", "rollouts", "final_epochs", "max_variants", "round_to"):
            check_int(name, getattr(self, name), 1)
        check_int("epochs", self.epochs, 0)
        self.ratios = tuple(sorted(float(r) for r in self.ratios))
        if not self.ratios or self.ratios[-1] != 1.0 or self.ratios[0] <= 0:
            raise ConfigError(f"ratios must be fractions in (0, 1] that include 1.0, got {self.ratios}")
