"""Sparse RNN pruning: unstructured, structured (hidden units) and random-graph sparsity for RNN/GRU/LSTM.

Implements the methods studied in Darji, "Investigating Sparsity in Recurrent Neural Networks" (arXiv
2407.20601): magnitude pruning of the input-to-hidden and hidden-to-hidden weights of ``nn.RNN`` (tanh,
relu), ``nn.GRU`` and ``nn.LSTM`` with retraining, and random-graph (Watts-Strogatz, Barabasi-Albert)
connectivity. The pruning schedules are the standard ones for RNNs: one-shot (See et al. 2016) or
gradual with Zhu & Gupta's cubic schedule ("To prune, or not to prune", arXiv 1710.01878; gradual RNN
pruning after Narang et al., arXiv 1704.05119), fine-tuning with the masks fixed between pruning steps.
Structured pruning removes whole hidden units (Wen et al., ISS, arXiv 1709.05027) and yields a smaller
dense RNN, the only form of RNN sparsity that is faster on dense runtimes (onnxruntime densifies sparse
initializers).

Example:
    >>> from slimkit import compress
    >>> fam = compress.sparse_rnn(model, train=splits.train, val=splits.val, sparsities=(0.5, 0.8, 0.9))
    >>> round(fam["s0.80"].metrics["sparsity"], 3)      # measured on the recurrent weights
    0.8
    >>> fast = compress.sparse_rnn(model, train=splits.train, val=splits.val, sparsities=(0.5,),
    ...                            structured=True)   # half the hidden units removed: a smaller GRU
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from slimkit.runtime.errors import ConfigError, UnsupportedModelError

from .cost import count_macs, count_params
from .family import Family, Variant, register_rebuilder
from .sparse_rnn_graph import GRAPHS, graph_masks
from .sparse_rnn_masks import (
    Masks,
    cubic_schedule,
    magnitude_masks,
    recurrent_weights,
    rnn_modules,
    size_metrics,
    sparsity_of,
    unit_masks,
)
from .sparse_rnn_shrink import find_consumers, shrink_units
from .train import TASKS, evaluate, make_optimizer, progress_bar, set_seed, task_loss

__all__ = ["SparseRNNConfig", "sparse_rnn", "SCOPES", "PRUNE_SCHEDULES", "GRAPHS"]

SCOPES = ("global", "layer", "gate")
PRUNE_SCHEDULES = ("gradual", "oneshot")
WEIGHT_KINDS = ("ih", "hh")


@dataclass
class SparseRNNConfig:
    """Options of :func:`sparse_rnn` (a JSON-serialisable recipe, stored with every variant).

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
    version: int = field(default=1)

    def __post_init__(self):
        try:
            vals = tuple(sorted({float(s) for s in self.sparsities}))
        except (TypeError, ValueError):
            raise ConfigError(f"sparsities must be a sequence of fractions in [0, 1), got {self.sparsities!r}") from None
        bad = [s for s in vals if not 0.0 <= s < 1.0]
        if not vals or bad:
            raise ConfigError(f"sparsities must be fractions in [0, 1) (e.g. (0.5, 0.8, 0.9)), got "
                              f"{self.sparsities!r}" + (f"; out of range: {bad}" if bad else ""))
        self.sparsities = vals
        if self.graph is not None and self.graph not in GRAPHS:
            raise ConfigError(f"graph={self.graph!r} is not one of {GRAPHS} or None")
        if self.schedule is None:
            self.schedule = "oneshot" if self.graph else "gradual"
        if self.schedule not in PRUNE_SCHEDULES:
            raise ConfigError(f"schedule={self.schedule!r} is not one of {PRUNE_SCHEDULES}")
        if self.scope not in SCOPES:
            raise ConfigError(f"scope={self.scope!r} is not one of {SCOPES}")
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
        if self.task not in TASKS:
            raise ConfigError(f"task={self.task!r} is not one of {TASKS}")
        for name in ("epochs", "prune_steps"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < (0 if name == "epochs" else 1):
                raise ConfigError(f"{name}={v!r}: pass an int >= {0 if name == 'epochs' else 1}")
        if not 0.0 < self.ramp <= 1.0:
            raise ConfigError(f"ramp={self.ramp!r}: pass a fraction in (0, 1]")
        if not 0.0 <= self.rewire_p <= 1.0:
            raise ConfigError(f"rewire_p={self.rewire_p!r}: pass a probability in [0, 1]")
        if not self.clip > 0:
            raise ConfigError(f"clip={self.clip!r}: pass a positive gradient-norm limit such as 5.0")

    def to_dict(self) -> dict:
        return asdict(self)


def _events(cfg: SparseRNNConfig, target: float, total: int) -> dict[int, float]:
    """Optimiser step -> sparsity to prune to before that step."""
    if cfg.schedule == "oneshot" or total == 0 or cfg.prune_steps == 1:
        return {0: target}
    n = cfg.prune_steps
    last = max(0, int(cfg.ramp * total) - 1)
    events: dict[int, float] = {}
    for k, s in enumerate(cubic_schedule(target, n)):
        events[round(k * last / (n - 1))] = s  # collisions (tiny runs) keep the later, larger sparsity
    return events


def _finetune(model: nn.Module, masks: Masks, prune, train: DataLoader, cfg: SparseRNNConfig, target: float,
              *, progress: bool, desc: str) -> None:
    """Prune on the schedule and fine-tune with the masks fixed in between (in place)."""
    steps = len(train) if cfg.epochs else 0
    total = cfg.epochs * steps
    events = _events(cfg, target, total)
    if total == 0:
        masks.set(prune(target))
        return
    set_seed(cfg.seed)
    gen = getattr(train, "generator", None)
    if isinstance(gen, torch.Generator):
        gen.manual_seed(cfg.seed)
    opt, sched = make_optimizer(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                epochs=cfg.epochs, steps_per_epoch=steps, schedule="cosine")
    loss_fn = task_loss(cfg.task)
    device = next(model.parameters()).device
    batches = (b for _ in range(cfg.epochs) for b in train)
    masks.hook()
    model.train()
    try:
        for step, (x, y) in zip(progress_bar(range(total), enabled=progress, desc=desc, total=total), batches):
            if step in events:
                masks.set(prune(events[step]))
            x, y = x.to(device), y.to(device)
            out = model(x)
            loss = loss_fn(out, y if cfg.task == "classification" else y.view_as(out))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            opt.step()
            sched.step()
            masks.apply()
    finally:
        masks.unhook()
        model.eval()


def _check_equal(small: nn.Module, masked: nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        a, b = small(x), masked(x)
    if a.shape != b.shape or not torch.allclose(a, b, rtol=1e-4, atol=1e-5):
        err = (a - b).abs().max().item() if a.shape == b.shape else f"shape {tuple(a.shape)} vs {tuple(b.shape)}"
        raise UnsupportedModelError(
            f"removing hidden units changed {type(masked).__name__}'s output (max difference {err}); its "
            "forward probably depends on the hidden size in a way slimkit cannot follow (a reshape with "
            "literal sizes, the RNN output returned directly). Use structured=False for this model")


def _variant(model: nn.Module, cfg: SparseRNNConfig, s: float, train: DataLoader, val: DataLoader | None,
             example: torch.Tensor, progress: bool) -> Variant:
    m = copy.deepcopy(model).eval()
    weights = recurrent_weights(m, cfg.weights)
    config: dict[str, Any] = {"sparsity": s, "sparse_rnn": cfg.to_dict()}
    metrics: dict[str, float] = {}
    if cfg.structured:
        kept: dict[str, list[list[int]]] = {}
        masks = Masks(m, [f"{r}.{n}" if r else n for r, mod in rnn_modules(m).items()
                          for n, _ in mod.named_parameters()])

        def prune(frac: float) -> dict[str, torch.Tensor]:
            new, units = unit_masks(m, frac, current=masks.masks)
            kept.update(units)
            return new
    else:
        masks = Masks(m, [w.name for w in weights])
        records: list[dict] = []

        def prune(frac: float) -> dict[str, torch.Tensor]:
            if cfg.graph:
                new, recs = graph_masks(m, cfg.graph, frac, kinds=cfg.weights, rewire_p=cfg.rewire_p,
                                         seed=cfg.seed)
                records[:] = recs
                return new
            return magnitude_masks(m, weights, frac, cfg.scope, current=masks.masks)

    _finetune(m, masks, prune, train, cfg, s, progress=progress, desc=f"sparse_rnn {s:.2f}")
    if cfg.structured:
        consumers = find_consumers(m, kept, example)
        small = shrink_units(m, kept, consumers).eval()
        _check_equal(small, m, example)
        config.update(units=kept, consumers=consumers,
                      hidden_size={n: r.hidden_size for n, r in rnn_modules(small).items()})
        h_old = sum(r.hidden_size for r in rnn_modules(m).values())
        metrics["units_removed"] = 1.0 - sum(r.hidden_size for r in rnn_modules(small).values()) / h_old
        m = small
    else:
        metrics["sparsity"] = sparsity_of(m, weights)
        if cfg.graph:
            config["graphs"] = records
            for key in ("avg_degree", "clustering", "path_length", "density"):
                metrics[f"graph_{key}"] = sum(r[key] for r in records) / max(len(records), 1)
    if val is not None:
        metrics.update(evaluate(m, val, task=cfg.task))
    metrics.update(size_metrics(m))
    name = f"{'u' if cfg.structured else 's'}{s:.2f}"
    v = Variant.measure(name, m, example, metrics=metrics, config=config)
    if not cfg.structured:
        v.params = int(metrics["nonzero_params"])  # zeros are not parameters a sparse format stores
    return v


def sparse_rnn(model: nn.Module, *, train: DataLoader, val: DataLoader | None = None,
               sparsities=(0.5, 0.8, 0.9), schedule: str | None = None, scope: str = "global",
               structured: bool = False, graph: str | None = None, epochs: int = 5,
               example_input: torch.Tensor | None = None, progress: bool = True, seed: int = 0,
               **options) -> Family:
    """Prune the recurrent layers of ``model`` to each sparsity (Darji, arXiv 2407.20601; Zhu & Gupta,
    arXiv 1710.01878) and return one fine-tuned variant per sparsity.

    Args:
        model: a trained model holding ``nn.RNN``/``nn.GRU``/``nn.LSTM`` modules (any layers, directions,
            ``batch_first``); its forward takes one tensor and returns one. Not modified.
        train: loader of ``(inputs, targets)`` for fine-tuning.
        val: loader for each variant's metrics (and the dense model's, in ``family.source``).
        sparsities: fractions in [0, 1): of recurrent weights zeroed, or of hidden units removed.
        schedule: ``"gradual"`` (cubic) or ``"oneshot"``; ``None`` picks gradual, or oneshot with ``graph``.
        scope: ``"global"``, ``"layer"`` or ``"gate"`` (magnitude pruning).
        structured: remove whole hidden units: a smaller dense model (variants named ``u0.50``).
        graph: ``"watts_strogatz"`` or ``"barabasi_albert"`` random-graph masks instead of magnitudes.
        epochs: fine-tuning epochs per variant.
        example_input: one input batch; taken from ``train`` when omitted.
        progress: show a progress bar.
        seed: seeds everything.
        **options: the rest of :class:`SparseRNNConfig` (``lr``, ``weights``, ``ramp``, ``rewire_p``, ...).

    Returns:
        A :class:`Family`, one variant per sparsity (``s0.80``; ``u0.50`` when structured). Unstructured
        variants keep the dense shapes (zeros included) and dense MACs, which is what a dense runtime
        executes; their ``params`` count nonzeros. Metrics: accuracy/loss, measured ``sparsity`` (or
        ``units_removed``), ``nonzero_params``, ``dense_bytes``, ``sparse_bytes``, ``compressed_bytes``,
        and ``graph_*`` properties with ``graph``.

    Raises:
        UnsupportedModelError: no recurrent module, or (structured) a model whose units cannot be removed.
        ConfigError: a sparsity outside [0, 1), an unknown scope, schedule or graph, bad options.

    Example:
        >>> fam = sparse_rnn(model, train=splits.train, val=splits.val, sparsities=(0.8,), epochs=3)
        >>> round(fam["s0.80"].metrics["sparsity"], 3)
        0.8
    """
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(train, DataLoader):
        raise ConfigError(f"train must be a torch DataLoader of (inputs, targets), got {type(train).__name__}")
    known = set(SparseRNNConfig.__dataclass_fields__) - {"version"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(f"sparse_rnn got unknown options {unknown}; options are {sorted(known)}")
    cfg = SparseRNNConfig(sparsities=sparsities, schedule=schedule, scope=scope, structured=structured,
                          graph=graph, epochs=epochs, seed=seed, **options)
    rnn_modules(model)  # raises for a model without recurrent layers
    if example_input is None:
        example_input = next(iter(train))[0][:2]
    with torch.no_grad():
        out = copy.deepcopy(model).eval()(example_input)
    if not isinstance(out, torch.Tensor):
        raise UnsupportedModelError(f"{type(model).__name__} returns {type(out).__name__}; sparse_rnn needs a "
                                    "forward that returns one tensor (wrap the RNN in a module with a head)")
    source = {"params": count_params(model), "macs": count_macs(model, example_input),
              "metrics": evaluate(model, val, task=cfg.task) if val is not None else {}}
    source["metrics"].update(size_metrics(model))
    variants = [_variant(model, cfg, s, train, val, example_input, progress) for s in cfg.sparsities]
    return Family(variants, method="sparse_rnn", example_input=example_input, task=cfg.task, source=source,
                  base=getattr(model, "slimkit_zoo", None))


@register_rebuilder("sparse_rnn")
def _rebuild(base: nn.Module, config: dict, example_input: torch.Tensor) -> nn.Module:
    if "units" in config:
        return shrink_units(base, config["units"], config.get("consumers", {}))
    return copy.deepcopy(base)

