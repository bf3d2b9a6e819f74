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
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from slimkit.runtime.errors import UnsupportedModelError

from ..family import Family, Variant, register_rebuilder, variant_config
from ..outputs import Output
from ..preamble import prepare
from ..train import evaluate, make_optimizer, progress_bar, set_seed, task_loss
from .config import SparseRNNConfig
from .masks import (
    Masks,
    cubic_schedule,
    magnitude_masks,
    recurrent_weights,
    rnn_modules,
    size_metrics,
    sparsity_of,
    unit_masks,
)
from .random_graphs import graph_masks
from .shrink import find_consumers, shrink_units

__all__ = ["sparse_rnn", "rebuild"]


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
    shape: dict[str, Any] = {"sparsity": s}
    info: dict[str, Any] = {}
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
        shape.update(units=kept, consumers=consumers,
                      hidden_size={n: r.hidden_size for n, r in rnn_modules(small).items()})
        h_old = sum(r.hidden_size for r in rnn_modules(m).values())
        metrics["units_removed"] = 1.0 - sum(r.hidden_size for r in rnn_modules(small).values()) / h_old
        m = small
    else:
        metrics["sparsity"] = sparsity_of(m, weights)
        if cfg.graph:
            info["graphs"] = records
            for key in ("avg_degree", "clustering", "path_length", "density"):
                metrics[f"graph_{key}"] = sum(r[key] for r in records) / max(len(records), 1)
    if val is not None:
        metrics.update(evaluate(m, val, task=cfg.task))
    metrics.update(size_metrics(m))
    name = f"{'u' if cfg.structured else 's'}{s:.2f}"
    v = Variant.measure(name, m, example, metrics=metrics, config=variant_config(cfg, shape, info))
    if not cfg.structured:
        v.params = int(metrics["nonzero_params"])  # zeros are not parameters a sparse format stores
    return v


def sparse_rnn(model: nn.Module, *, train: DataLoader, val: DataLoader | None = None,
               sparsities=(0.5, 0.8, 0.9), schedule: str | None = None, scope: str = "global",
               structured: bool = False, graph: str | None = None, epochs: int = 5,
               example_input: torch.Tensor | None = None, progress: bool = True, seed: int = 0,
               output: Output = None, config: SparseRNNConfig | None = None, **options) -> Family:
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
        output: which tensor of the model's output to compress when it returns a ``ModelOutput``, dict or
            tuple: a key or attribute name (``"logits"``), an index, or a function ``out -> tensor``;
            every variant then returns that tensor (see :mod:`slimkit.compress.outputs`).
        config: a whole :class:`SparseRNNConfig` instead of the keyword options.
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
    cfg = SparseRNNConfig.resolve(config, dict(sparsities=sparsities, schedule=schedule, scope=scope,
                                               structured=structured, graph=graph, epochs=epochs, seed=seed),
                                  options)
    prep = prepare("sparse_rnn", model, train=train, val=val, example_input=example_input, seed=cfg.seed,
                   task=cfg.task, applies=rnn_modules, output=output)  # rnn_modules raises for a model without recurrent layers
    if cfg.structured:  # refuse now what the shrink after fine-tuning would refuse
        from ..recurrent import rnn_group  # recurrent builds on this package's shrink: import when needed

        for name in rnn_modules(prep.model):
            reason = "the model is itself an nn.RNNBase; wrap it in a module with a head" if not name else \
                rnn_group(prep.model, name, prep.example_input)[1]
            if reason:
                raise UnsupportedModelError(f"structured=True cannot remove hidden units of {name or 'the model'}: "
                                            f"{reason}; use structured=False (unstructured pruning) for this model")
    source = prep.source
    source["metrics"].update(size_metrics(prep.model))
    variants = [_variant(prep.model, cfg, s, train, val, prep.example_input, progress) for s in cfg.sparsities]
    return Family(variants, method="sparse_rnn", example_input=prep.example_input, task=cfg.task, source=source,
                  base=prep.base)


@register_rebuilder("sparse_rnn")
def rebuild(base: nn.Module, config: dict, example_input: torch.Tensor) -> nn.Module:
    """The module of a saved sparse-RNN variant (its weights still to load), from the base model: the
    dense shapes, or the smaller RNN when hidden units were removed."""
    SparseRNNConfig.from_dict(config["recipe"])  # refuses a recipe this slimkit cannot read
    shape = config["shape"]
    if "units" in shape:
        return shrink_units(base, shape["units"], shape.get("consumers", {}))
    return copy.deepcopy(base)

