"""The SortedNet supernet: a model wrapped so that every sub-network of its menu runs on shared weights.

Part of SortedNet (arXiv 2309.00255; see :mod:`slimkit.compress.sortednet.method`). Sub-networks are
prefixes: the first k channels of every coupled channel group (width), the first h attention heads, and
the first d blocks of each stack of identical blocks (depth), found by :func:`slimkit.compress.graph.analyze`.
:class:`SortedNet` trains them together (sandwich sampling, in-place distillation), keeps BatchNorm
statistics per sub-network, and extracts each one into a dense module whose output equals the supernet's.

Example:
    >>> sn = compress.SortedNet(model, example_input=x[:1], widths=(0.5, 1.0))  # doctest: +SKIP
    >>> with sn.use(width=0.5):
    ...     y = sn(x)
    >>> small = sn.extract(width=0.5)   # plain nn.Module, same output as y
"""

from __future__ import annotations

import contextlib
import copy
import random

import torch
from torch import nn
from torch.func import functional_call
from torch.utils.data import DataLoader

from slimkit.runtime.errors import ConfigError, UnsupportedModelError

from .. import graph
from ..family import Family, Variant, variant_config
from ..outputs import Output
from ..preamble import adapt
from ..reorder import sort_channels
from ..train import evaluate, kd_loss, make_optimizer, progress_bar, set_seed, task_loss
from .config import SortedNetConfig

__all__ = ["SortedNet"]

class _Sub:
    """One sub-network: a shrunk module skeleton, its index map, and its own BatchNorm statistics."""

    def __init__(self, key, skeleton: nn.Module, index_map: graph.IndexMap, full: nn.Module, plan: dict):
        self.key, self.skeleton, self.index_map, self.plan = key, skeleton, index_map, plan
        params = dict(full.named_parameters())
        self.param_names = [n for n in index_map if n in params]
        self.buffers = {n: graph.take(b, index_map[n]).detach().clone()
                        for n, b in full.named_buffers() if n in index_map}
        self.buffers.update({n: b.detach().clone() for n, b in skeleton.named_buffers()
                             if n not in self.buffers})

    def forward(self, full_params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        tensors = {n: graph.take(full_params[n], self.index_map[n]) for n in self.param_names}
        tensors.update(self.buffers)
        return functional_call(self.skeleton, tensors, (x,))


class SortedNet(nn.Module):
    """A model wrapped so that any sub-network in its menu runs on the shared weights.

    Args:
        model: the trained model (not modified: the supernet works on a copy).
        example_input: one input batch (any batch size), batch first.
        widths, depths, ...: see :class:`SortedNetConfig`; or pass ``config=``.

    Raises:
        UnsupportedModelError: nothing in the model can shrink; the message says why.
    """

    def __init__(self, model: nn.Module, *, example_input: torch.Tensor,
                 config: SortedNetConfig | None = None, output: Output = None, **options):
        super().__init__()
        self.config = config or SortedNetConfig.from_options(**options)
        self.model = adapt(model, output=output)
        self.example_input = example_input.detach()[:2].clone()
        self.base = getattr(model, "slimkit_zoo", None)
        cfg = self.config
        self.analysis = graph.analyze(self.model, self.example_input, ignore=cfg.ignore)
        if not self.analysis.groups and not (cfg.depths and self.analysis.stacks):
            why = "; ".join(f"{r}: {reason}" for r, reason in self.analysis.frozen) or "no conv/linear layers"
            raise UnsupportedModelError(
                f"SortedNet found nothing to shrink in {type(model).__name__} ({why}); it slices conv/linear "
                "channels, attention heads and stacks of identical blocks")
        if cfg.depths and not self.analysis.stacks:
            raise UnsupportedModelError(
                f"depths={cfg.depths} was given but {type(model).__name__} has no stack of identical, "
                "shape-preserving blocks in a Sequential/ModuleList; pass depths=None")
        if cfg.reorder:
            sort_channels(self.model, self.example_input, self.analysis)
        self._subs: dict[tuple[float, float], _Sub] = {}
        self._active = self.menu[-1]

    # -- the menu ------------------------------------------------------------------------------------
    @property
    def menu(self) -> list[tuple[float, float]]:
        """Every (width, depth) pair, smallest first."""
        depths = self.config.depths or (1.0,)
        return sorted(((w, d) for w in self.config.widths for d in depths), key=lambda k: (k[0] * k[1], k))

    def _key(self, width: float, depth: float) -> tuple[float, float]:
        if width not in self.config.widths:
            raise ConfigError(f"width {width!r} is not in this model's menu {self.config.widths}")
        depths = self.config.depths or (1.0,)
        if depth not in depths:
            raise ConfigError(f"depth {depth!r} is not in this model's menu {tuple(depths)}")
        return (float(width), float(depth))

    def plan(self, width: float, depth: float = 1.0) -> dict:
        """The exact shapes of one sub-network: channels kept per group, blocks kept per stack."""
        key = self._key(width, depth)
        return {"channels": {g.root: g.keep(key[0], self.config.round_to) for g in self.analysis.groups},
                "blocks": {s.container: s.keep(key[1]) for s in self.analysis.stacks}}

    def _sub(self, key: tuple[float, float]) -> _Sub:
        if key not in self._subs:
            plan = self.plan(*key)
            skeleton, index_map = graph.shrink(self.model, self.example_input, self.analysis,
                                               keep=plan["channels"], depth=plan["blocks"])
            self._subs[key] = _Sub(key, skeleton, index_map, self.model, plan)
        return self._subs[key]

    # -- running one -----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def use(self, width: float = 1.0, depth: float = 1.0):
        """Run the given sub-network inside the block: ``with sn.use(width=0.5): y = sn(x)``."""
        key = self._key(width, depth)
        previous, self._active = self._active, key
        try:
            yield self
        finally:
            self._active = previous

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the sub-network selected by :meth:`use` (the largest by default) with the shared weights."""
        sub = self._sub(self._active)
        sub.skeleton.train(self.training)
        return sub.forward(dict(self.model.named_parameters()), x)

    def extract(self, width: float = 1.0, depth: float = 1.0) -> nn.Module:
        """A standalone dense module of the sub-network: sliced weights and its BatchNorm statistics."""
        sub = self._sub(self._key(width, depth))
        small = copy.deepcopy(sub.skeleton)
        full = self.model.state_dict()  # every name of a tied weight (lm_head.weight and wte.weight)
        state = {n: graph.take(full[n], spec).detach().clone() for n, spec in sub.index_map.items()}
        state.update({n: b.clone() for n, b in sub.buffers.items()})
        persistent = small.state_dict().keys()  # non-persistent buffers (position_ids) stay the skeleton's
        small.load_state_dict({n: t for n, t in state.items() if n in persistent})
        return small.eval()

    def check(self) -> None:
        """Build every sub-network of the menu and check that its extracted module runs on the example input
        and gives the supernet's output at that size, so that a model slimkit cannot slice is refused
        before any training, never after.

        Raises:
            UnsupportedModelError: a sub-network that cannot be built, extracted or run (the message names
                the size and the error).
        """
        was = self.training
        self.eval()
        try:
            for width, depth in self.menu:
                try:
                    small = self.extract(width, depth)
                    with torch.no_grad(), self.use(width, depth):
                        got, want = small(self.example_input), self(self.example_input)
                except UnsupportedModelError:
                    raise
                except Exception as e:
                    raise UnsupportedModelError(
                        f"SortedNet cannot slice {type(self.model).__name__} at width {width}, depth {depth} "
                        f"({type(e).__name__}: {e})") from e
                if not torch.allclose(got, want, rtol=1e-4, atol=1e-5):
                    raise UnsupportedModelError(
                        f"the extracted width-{width} sub-network of {type(self.model).__name__} differs from the "
                        f"supernet's (max difference {(got - want).abs().max().item():.3g})")
        finally:
            self.train(was)

    # -- training ---------------------------------------------------------------------------------------
    def _plan_step(self, rng: random.Random) -> list[tuple[float, float]]:
        menu, cfg = self.menu, self.config
        if cfg.strategy == "all" or len(menu) <= cfg.samples_per_step:
            return menu[::-1]
        chosen = [menu[-1]] + ([menu[0]] if cfg.strategy == "sandwich" else [])
        rest = [k for k in menu if k not in chosen]
        return chosen + rng.sample(rest, min(len(rest), cfg.samples_per_step - len(chosen)))

    def fit(self, train: DataLoader, *, epochs: int | None = None, progress: bool = True) -> SortedNet:
        """Train every sub-network at once, then recalibrate BatchNorm per sub-network."""
        cfg = self.config
        epochs = cfg.epochs if epochs is None else epochs
        set_seed(cfg.seed)
        rng = random.Random(cfg.seed)
        if epochs > 0:
            steps = len(train)
            opt, sched = make_optimizer(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                        epochs=epochs, steps_per_epoch=steps)
            loss_fn = task_loss(cfg.task)
            largest = self.menu[-1]
            self.train()
            params = dict(self.model.named_parameters())
            bar = progress_bar(range(epochs * steps), enabled=progress, desc="sortednet", total=epochs * steps)
            batches = (b for _ in range(epochs) for b in train)
            device = next(self.model.parameters()).device
            for _, (x, y) in zip(bar, batches):
                x, y = x.to(device), y.to(device)
                opt.zero_grad(set_to_none=True)
                plan = self._plan_step(rng)
                soft = None
                for key in plan:
                    sub = self._sub(key)
                    sub.skeleton.train()
                    out = sub.forward(params, x)
                    loss = loss_fn(out, y)
                    if cfg.distill and soft is not None and cfg.task == "classification":
                        loss = (1 - cfg.kd_alpha) * loss + cfg.kd_alpha * kd_loss(out, soft, cfg.temperature)
                    if key == largest:
                        soft = out.detach()
                    (loss / len(plan)).backward()
                nn.utils.clip_grad_norm_(self.model.parameters(), 5.0)
                opt.step()
                sched.step()
            self.eval()
        self.calibrate(train)
        return self

    @torch.no_grad()
    def calibrate(self, loader: DataLoader) -> None:
        """Recompute each sub-network's BatchNorm statistics (cumulative average) on the first
        ``calibration_batches`` batches of ``loader``; every sub-network sees the same batches."""
        params = {n: p.detach() for n, p in self.model.named_parameters()}
        device = next(self.model.parameters()).device
        batches = [x.to(device) for _, (x, _y) in zip(range(self.config.calibration_batches), loader)]
        for key in self.menu:
            sub = self._sub(key)
            bns = [(n, m) for n, m in sub.skeleton.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
            if not bns:
                continue
            sub.skeleton.eval()
            momenta = {}
            for n, m in bns:
                momenta[n] = m.momentum
                m.momentum = None  # cumulative moving average over the calibration batches
                m.train()
                sub.buffers[f"{n}.running_mean"].zero_()
                sub.buffers[f"{n}.running_var"].fill_(1.0)
                sub.buffers[f"{n}.num_batches_tracked"].zero_()
            for x in batches:
                sub.forward(params, x)
            for n, m in bns:
                m.momentum = momenta[n]
                m.eval()

    def family(self, val: DataLoader | None = None, *, source: dict | None = None) -> Family:
        """Extract every sub-network into a :class:`Family`, with validation metrics when ``val`` is given."""
        variants = []
        for width, depth in self.menu:
            module = self.extract(width, depth)
            name = f"w{width:.2f}" + (f"-d{depth:.2f}" if self.config.depths else "")
            metrics = evaluate(module, val, task=self.config.task) if val is not None else {}
            config = variant_config(self.config, {"width": width, "depth": depth, **self.plan(width, depth)})
            variants.append(Variant.measure(name, module, self.example_input, metrics=metrics, config=config))
        return Family(variants, method="sortednet", example_input=self.example_input,
                      task=self.config.task, source=source, base=self.base)
