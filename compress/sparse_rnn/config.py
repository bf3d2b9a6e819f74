"""``SparseRNNConfig``: the options of :func:`slimkit.compress.sparse_rnn` (see :mod:`.method`)."""

from __future__ import annotations

from dataclasses import dataclass

from slimkit.runtime.errors import ConfigError

from ..config import MethodConfig, check_bool, check_choice, check_fractions, check_int
from ..train import TASKS
from .random_graphs import GRAPHS

__all__ = ["SparseRNNConfig", "SCOPES", "PRUNE_SCHEDULES", "WEIGHT_KINDS", "GRAPHS"]

SCOPES = ("global", "layer", "gate")
PRUNE_SCHEDULES = ("gradual", "oneshot")
WEIGHT_KINDS = ("ih", "hh")


@dataclass
class SparseRNNConfig(MethodConfig):
    """Options of :func:`~slimkit.compress.sparse_rnn` (a JSON-serialisable recipe, stored with every variant).

    Attributes:
        sparsities: one variant per value in [0, 1): the fraction of recurrent weights set to zero, or
            with ``structured=True`` the fraction of hidden units removed.
        schedule: ``"gradual"`` (cubic ramp over the first ``ramp`` of fine-tuning, ``prune_steps``
            pruning steps) or ``"oneshot"`` (prune once, then fine-tune). Default: gradual, except with
            ``graph`` (a fixed graph is applied once).
        scope: magnitude threshold over all recurrent weights (``"global"``, class-blind), per weight
            matrix (``"layer"``), or per gate block of each matrix (``"gate"``). Magnitude pruning only.
        structured: remove whole hidden units instead of single weights.
        graph: ``"watts_strogatz"`` or ``"barabasi_albert"``: the mask comes from a random graph.
        weights: which recurrent matrices to prune: ``"ih"`` (input-to-hidden), ``"hh"`` (hidden-to-hidden).
        epochs: fine-tuning epochs per variant (every variant starts from the dense model).
        lr, weight_decay: AdamW, cosine decay from ``lr`` (a fine-tuning rate, lower than training).
        ramp: fraction of the fine-tuning steps over which gradual pruning reaches the target.
        prune_steps: pruning steps of the gradual schedule.
        rewire_p: Watts-Strogatz rewiring probability (the thesis used 1.0: fully random graphs).
        clip: gradient-norm clip (the thesis clipped at 5).
        task: ``"classification"`` or ``"regression"``.
        seed: seeds training, data order and graphs.
    """

    METHOD = "sparse_rnn"
    VERSION = 1

    sparsities: tuple[float, ...] = (0.5, 0.8, 0.9)
    schedule: str | None = None
    scope: str = "global"
    structured: bool = False
    graph: str | None = None
    weights: tuple[str, ...] = WEIGHT_KINDS
    epochs: int = 5
    lr: float = 2e-3
    weight_decay: float = 1e-4
    ramp: float = 0.7
    prune_steps: int = 10
    rewire_p: float = 0.1
    clip: float = 5.0
    task: str = "classification"
    seed: int = 0

    def validate(self) -> None:
        """Refuse bad sparse-RNN options (sparsities, schedule, graph, weights, counts) with a ConfigError."""
        self.sparsities = check_fractions("sparsities", self.sparsities, example="(0.5, 0.8, 0.9)",
                                          low_open=False, high_open=True)
        if self.graph is not None:
            check_choice("graph", self.graph, GRAPHS, "or None")
        if self.schedule is None:
            self.schedule = "oneshot" if self.graph else "gradual"
        check_choice("schedule", self.schedule, PRUNE_SCHEDULES)
        check_choice("scope", self.scope, SCOPES)
        check_bool("structured", self.structured)
        if self.graph and self.structured:
            raise ConfigError("graph= and structured=True exclude each other: a graph masks single "
                              "connections, structured pruning removes whole units")
        if self.graph and self.schedule != "oneshot":
            raise ConfigError(f"schedule={self.schedule!r} with graph={self.graph!r}: a graph mask is fixed and "
                              "applied once; leave schedule unset (or 'oneshot')")
        if (self.graph or self.structured) and self.scope != "global":
            raise ConfigError(f"scope={self.scope!r} applies to magnitude pruning only; with "
                              f"{'graph' if self.graph else 'structured=True'} leave scope='global'")
        self.weights = tuple(self.weights)
        if not self.weights or any(w not in WEIGHT_KINDS for w in self.weights):
            raise ConfigError(f"weights={self.weights!r}: pass a non-empty subset of {WEIGHT_KINDS}")
        check_choice("task", self.task, TASKS)
        check_int("epochs", self.epochs, 0)
        check_int("prune_steps", self.prune_steps, 1)
        if not 0.0 < self.ramp <= 1.0:
            raise ConfigError(f"ramp={self.ramp!r}: pass a fraction in (0, 1]")
        if not 0.0 <= self.rewire_p <= 1.0:
            raise ConfigError(f"rewire_p={self.rewire_p!r}: pass a probability in [0, 1]")
        if not self.clip > 0:
            raise ConfigError(f"clip={self.clip!r}: pass a positive gradient-norm limit such as 5.0")
