"""``SortedNetConfig``: the options of :func:`slimkit.compress.sortednet` (see :mod:`.method`)."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import MethodConfig, check_choice, check_fraction, check_fractions, check_int
from ..train import TASKS

__all__ = ["SortedNetConfig", "STRATEGIES"]

STRATEGIES = ("sandwich", "random", "all")


@dataclass
class SortedNetConfig(MethodConfig):
    """Options of :func:`~slimkit.compress.sortednet` (a JSON-serialisable recipe, stored with every variant).

    Attributes:
        widths: width fractions of every shrinkable channel group (the menu).
        depths: fractions of each stack of identical blocks to keep, or None for no depth dimension.
        epochs: passes over the training data.
        lr: peak AdamW learning rate (one-cycle schedule).
        weight_decay: AdamW weight decay.
        strategy: sub-networks per step: ``"sandwich"`` (largest + smallest + random), ``"random"``
            (largest + random), ``"all"`` (every sub-network, every step).
        samples_per_step: sub-networks per step for ``sandwich``/``random``.
        distill: the smaller sub-networks also learn from the largest's logits (in-place distillation).
        kd_alpha: weight of that distillation term.
        temperature: softmax temperature of that distillation term.
        round_to: channel counts are rounded to multiples of this (hardware-friendly).
        reorder: sort each group's channels by importance first, so prefixes hold the strongest ones.
        calibration_batches: training batches used to recalibrate BatchNorm for each sub-network.
        ignore: module names whose output channels stay full.
        task: ``"classification"`` or ``"regression"``.
        seed: seeds sampling, training and data order.
    """

    METHOD = "sortednet"
    VERSION = 1

    widths: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
    depths: tuple[float, ...] | None = None
    epochs: int = 10
    lr: float = 2e-3
    weight_decay: float = 1e-4
    strategy: str = "sandwich"
    samples_per_step: int = 3
    distill: bool = True
    kd_alpha: float = 0.5
    temperature: float = 2.0
    round_to: int = 8
    reorder: bool = True
    calibration_batches: int = 20
    ignore: tuple[str, ...] = ()
    task: str = "classification"
    seed: int = 0

    def validate(self) -> None:
        """Refuse bad SortedNet options with a ConfigError; widths and depths become sorted tuples."""
        self.widths = check_fractions("widths", self.widths)
        if self.depths is not None:
            self.depths = check_fractions("depths", self.depths)
        self.ignore = tuple(self.ignore)
        check_choice("strategy", self.strategy, STRATEGIES)
        check_choice("task", self.task, TASKS)
        check_int("epochs", self.epochs, 0)
        for name in ("samples_per_step", "round_to", "calibration_batches"):
            check_int(name, getattr(self, name), 1)
        check_fraction("kd_alpha", self.kd_alpha, low_open=False)
