"""``SNNKConfig``: the options of :func:`slimkit.compress.snnk` (see :mod:`.method`)."""

from __future__ import annotations

from dataclasses import dataclass

from slimkit.runtime.errors import ConfigError

from ..config import MethodConfig, check_bool, check_choice, check_fraction
from ..train import TASKS
from .features import KINDS

__all__ = ["SNNKConfig", "MODES"]

MODES = ("distill", "closed_form")


def _features(value) -> tuple[int, ...]:
    vals = (value,) if isinstance(value, int) and not isinstance(value, bool) else value
    try:
        vals = tuple(vals)
    except TypeError:
        vals = None
    if not vals or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in vals):
        raise ConfigError(f"features must be positive ints (the random features m per variant), got {value!r}; "
                          "e.g. features=(16, 64)")
    return tuple(sorted(set(vals)))


@dataclass
class SNNKConfig(MethodConfig):
    """Options of :func:`~slimkit.compress.snnk` (a JSON-serialisable recipe, stored with every variant).

    Attributes:
        features: the ``m`` of each variant (random features per SNNK layer).
        kind: feature map, one of :data:`KINDS`: ``"relu"`` (ReLU-SNNK, arc-cosine kernel), ``"exp"``
            (positive features), ``"cos"`` / ``"sin"`` (Fourier features, even ``m``).
        mode: ``"distill"`` or ``"closed_form"``.
        targets: names of the replaced blocks (resolved; see :func:`~slimkit.compress.snnk`).
        epochs: distillation epochs (default: 10 for distill, 0 for closed_form).
        lr, weight_decay: AdamW settings of the distillation (one-cycle schedule).
        kd_alpha, temperature: weight and temperature of :func:`~slimkit.compress.train.kd_loss`.
        orthogonal: block-orthogonal random projections (lower variance) instead of i.i.d. Gaussian.
        ridge: ``"auto"`` (held-out choice) or a fixed lambda relative to the mean eigenvalue of ``Z^T Z``.
        pool: closed form only: draw ``pool * m`` candidate projections for each block's last random map
            and keep the ``m`` that carry most of the closed-form fit
            (:func:`~slimkit.compress.snnk.fit.select_features`); 1 keeps the first draw. Default: 2 for
            ``closed_form`` (measured: +2.5 points closed-form accuracy on the benchmark MLP, for a ridge
            solve of size ``2m`` instead of ``m``), 1 for ``distill``.
        calibration_batches: training batches used for scales and the closed-form fit.
        task: ``"classification"`` or ``"regression"``.
        seed: seeds the projections, the training and the data order.
    """

    METHOD = "snnk"
    VERSION = 1

    features: tuple[int, ...] = (16, 64)
    kind: str = "relu"
    mode: str = "distill"
    targets: tuple[str, ...] = ()
    epochs: int | None = None
    lr: float = 3e-3
    weight_decay: float = 1e-4
    kd_alpha: float = 0.5
    temperature: float = 4.0
    orthogonal: bool = True
    ridge: float | str = "auto"
    pool: int | None = None
    calibration_batches: int = 64
    task: str = "classification"
    seed: int = 0

    def validate(self) -> None:
        """Refuse bad SNNK options with a ConfigError; ``features`` and ``targets`` become tuples."""
        self.features = _features(self.features)
        self.targets = tuple(self.targets)
        check_choice("kind", self.kind, KINDS)
        check_choice("mode", self.mode, MODES)
        check_choice("task", self.task, TASKS)
        check_bool("orthogonal", self.orthogonal)
        if self.kind in ("cos", "sin") and any(m % 2 for m in self.features):
            raise ConfigError(f"kind={self.kind!r} pairs a cos and a sin per projection, so every m must be even; "
                              f"got features={self.features}")
        if self.epochs is None:
            self.epochs = 10 if self.mode == "distill" else 0
        if self.pool is None:
            self.pool = 2 if self.mode == "closed_form" else 1
        for name in ("epochs", "calibration_batches", "pool"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < (0 if name == "epochs" else 1):
                raise ConfigError(f"{name} must be a {'non-negative' if name == 'epochs' else 'positive'} int, "
                                  f"got {v!r}")
        if self.pool > 1 and self.mode != "closed_form":
            raise ConfigError(f"pool={self.pool} selects random features by their closed-form fit: it needs "
                              "mode='closed_form' (add epochs=N to distil afterwards), or pool=1")
        if self.mode == "distill" and self.epochs == 0:
            raise ConfigError("mode='distill' needs epochs >= 1; use mode='closed_form' for no training")
        if not (self.ridge == "auto" or (isinstance(self.ridge, (int, float)) and not isinstance(self.ridge, bool)
                                         and self.ridge >= 0)):
            raise ConfigError(f"ridge must be 'auto' or a non-negative number, got {self.ridge!r}")
        check_fraction("kd_alpha", self.kd_alpha, low_open=False)
