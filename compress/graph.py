"""Graph analysis of arbitrary ``nn.Module``s: coupled channel groups and stacks of identical blocks.

Channel coupling comes from torch-pruning's ``DependencyGraph`` (Fang et al., "DepGraph: Towards Any
Structural Pruning", CVPR 2023), which traces the autograd graph and ties together every dimension that
must shrink together: residual adds, BatchNorm, depthwise convs, concatenations, and the q/k/v/out
projections around an attention kernel. We use it rather than our own tracer because it is maintained,
handles far more layer types than a hand-written table, and prunes every coupled tensor consistently.

On top of it this module adds what nested (SortedNet) and RL (N2N) compression need:

* which groups may shrink: not the model's output, not groups tied to a LayerNorm/GroupNorm/Embedding
  (shrinking those changes normalisation statistics, so a slice is not the same network), not recurrent
  layers; attention groups shrink by whole heads;
* stacks of identical, shape-preserving blocks that a depth dimension may cut from the tail;
* :func:`shrink`, which builds a physically smaller copy *and* the exact map from each of its tensors
  to the indices of the full model's tensor, so a sub-network can run on slices of shared weights.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import torch
from torch import nn

from slimkit.runtime.errors import ConfigError, UnsupportedModelError

from . import depgraph, recurrent
from .modules import hooks, replace_submodule
from .outputs import not_one_tensor

__all__ = ["ChannelGroup", "BlockStack", "Analysis", "analyze", "shrink", "Skip", "IndexMap", "take"]

_ROOT_TYPES = depgraph.ROOT_TYPES
_FROZEN_TYPES = (nn.LayerNorm, nn.GroupNorm, nn.Embedding, nn.RNNBase, nn.MultiheadAttention,
                 nn.modules.conv._ConvTransposeNd)
_HEAD_ATTRS = ("num_heads", "n_heads", "num_attention_heads", "n_head")

# per parameter/buffer name: one entry per dim, either an int n (keep the prefix [:n]) or a LongTensor
IndexMap = dict[str, list]


@dataclass(frozen=True)
class ChannelGroup:
    """Channels that must shrink together. ``unit`` > 1 for attention groups (one head)."""

    root: str                 # module whose output channels index the group
    size: int                 # channels in the full model
    unit: int                 # granularity: head_dim for attention, else 1
    members: tuple[str, ...]  # modules touched when the group shrinks
    sources: tuple[str, ...]  # conv/linear members whose *output* channels are the group

    @property
    def kind(self) -> str:
        """``"heads"`` for an attention group (it shrinks by whole heads), else ``"channels"``."""
        return "heads" if self.unit > 1 else "channels"

    def keep(self, fraction: float, round_to: int = 8) -> int:
        """Channels kept at width ``fraction``: whole heads, else a multiple of ``round_to``."""
        if self.unit > 1:
            heads = self.size // self.unit
            return max(1, round(fraction * heads)) * self.unit
        step = round_to if self.size >= 2 * round_to else 1
        return min(self.size, max(step, step * round(fraction * self.size / step)))


@dataclass(frozen=True)
class BlockStack:
    """Consecutive identical, shape-preserving children of a Sequential/ModuleList."""

    container: str
    indices: tuple[int, ...]

    def keep(self, fraction: float) -> int:
        """Blocks kept at depth ``fraction``: a prefix of the stack, at least one."""
        return max(1, math.ceil(fraction * len(self.indices) - 1e-9))


@dataclass
class Analysis:
    """What :func:`analyze` found: channel groups, block stacks, groups kept full and why, removable units."""
    groups: list[ChannelGroup]
    stacks: list[BlockStack]
    frozen: list[tuple[str, str]] = field(default_factory=list)  # (root, reason) of groups kept full
    output_layers: tuple[str, ...] = ()
    units: list[str] = field(default_factory=list)  # removable: shape-preserving blocks/layers, in run order


class Skip(nn.Module):
    """Stands in for a removed block: returns its first input unchanged."""

    def forward(self, x, *args, **kwargs):
        """``x``, unchanged."""
        return x


def _get(model: nn.Module, name: str) -> nn.Module:
    return model.get_submodule(name) if name else model


def _run(model: nn.Module, example_input: torch.Tensor):
    with torch.no_grad():
        return model(example_input)


def _execution_order(model: nn.Module, example_input: torch.Tensor) -> list[str]:
    order: list[str] = []
    names = {m: n for n, m in model.named_modules()}
    with hooks(m.register_forward_hook(lambda mod, a, o: order.append(names[mod]))
               for m in model.modules() if isinstance(m, _ROOT_TYPES)):
        out = _run(model, example_input)
    if not isinstance(out, torch.Tensor):
        raise not_one_tensor(type(model).__name__, out)
    return order


def _output_layers(model: nn.Module, example_input: torch.Tensor) -> tuple[str, ...]:
    """The last conv/linear executed: its output channels are the model's outputs, never shrunk."""
    order = _execution_order(model, example_input)
    return (order[-1],) if order else ()


def _head_unit(model: nn.Module, members: list[str], size: int) -> int:
    for name in members:
        parent = _get(model, name.rpartition(".")[0])
        head_dim = getattr(parent, "head_dim", None)
        if isinstance(head_dim, int) and head_dim > 0 and size % head_dim == 0:
            return head_dim
        for attr in _HEAD_ATTRS:
            heads = getattr(parent, attr, None)
            if isinstance(heads, int) and heads > 1 and size % heads == 0:
                return size // heads
    return 1


def analyze(model: nn.Module, example_input: torch.Tensor, *, ignore: tuple[str, ...] = ()) -> Analysis:
    """Find the channel groups that may shrink and the block stacks that may be cut.

    Args:
        model: any module whose forward takes one batch-first tensor and returns one tensor.
        example_input: an input batch (its values do not matter).
        ignore: names of modules whose output channels must stay full (the output layer always does).

    Raises:
        UnsupportedModelError: the model cannot be traced; the message names it and why.
    """
    model = copy.deepcopy(model).eval()
    outputs = _output_layers(model, example_input) + tuple(ignore)
    traced = depgraph.trace(model, example_input)
    groups, frozen = [], []
    for root, group, members, sources in depgraph.groups(model, traced, [_get(model, n) for n in outputs]):
        if group is None:
            frozen.append((root, members[0]))
            continue
        blockers = sorted({n for n in members if isinstance(_get(model, n), _FROZEN_TYPES)})
        if blockers:
            frozen.append((root, f"coupled to {blockers[0]} ({type(_get(model, blockers[0])).__name__})"))
            continue
        split = depgraph.split_sources(traced, sources)
        if split:
            frozen.append((root, f"the output of {split[0]} ({type(_get(model, split[0])).__name__}) is split into "
                                 "parts (a packed projection such as q/k/v): a prefix of it is not a prefix of each part"))
            continue
        size = len(group[0].idxs)
        groups.append(ChannelGroup(root, size, _head_unit(model, members, size),
                                   tuple(dict.fromkeys(members)), tuple(dict.fromkeys(sources))))
    for name, rnn in recurrent.recurrent_layers(model).items():  # hidden units: a group torch-pruning skips
        consumers, reason = recurrent.rnn_group(model, name, example_input)
        if reason:
            frozen.append((name, reason))
        else:
            groups.append(ChannelGroup(name, rnn.hidden_size, 1, (name, *consumers), (name,)))
    stacks, units = _stacks_and_units(model, example_input, outputs)
    return Analysis(groups, stacks, frozen, outputs, units)


def _signature(m: nn.Module) -> tuple:
    return (type(m),) + tuple((n, tuple(p.shape)) for n, p in m.state_dict().items())


def _stacks_and_units(model: nn.Module, example_input: torch.Tensor, outputs: tuple[str, ...]):
    """Stacks of identical shape-preserving children, and removable units.

    A unit is a child of a Sequential/ModuleList that keeps its input's shape and holds a conv or
    linear layer, so replacing it by :class:`Skip` leaves a valid model (a residual block, a
    Transformer block, a same-width layer of an MLP). Units holding other units are left out in favour
    of the finer ones; the output layer is never one.
    """
    preserving: dict[nn.Module, bool] = {}
    order: list[nn.Module] = []

    def hook(mod, args, out):
        ok = bool(args) and isinstance(args[0], torch.Tensor) and isinstance(out, torch.Tensor)
        preserving[mod] = preserving.get(mod, True) and ok and args[0].shape == out.shape
        order.append(mod)

    containers = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Sequential, nn.ModuleList))]
    with hooks(c.register_forward_hook(hook) for _, m in containers for c in m):
        _run(model, example_input)
    stacks = []
    for name, container in containers:
        children = list(container)
        run: list[int] = []
        for i, child in enumerate(children):
            same = run and _signature(child) == _signature(children[run[-1]])
            if preserving.get(child) and same:
                run.append(i)
                continue
            if len(run) > 1:
                stacks.append(BlockStack(name, tuple(run)))
            run = [i] if preserving.get(child) and any(True for _ in child.parameters()) else []
        if len(run) > 1:
            stacks.append(BlockStack(name, tuple(run)))
    names = {m: n for n, m in model.named_modules()}
    first_run = {m: i for i, m in reversed(list(enumerate(order)))}
    candidates = [
        names[m] for m in first_run
        if preserving.get(m) and any(isinstance(x, _ROOT_TYPES) for x in m.modules())
        and not any(o == names[m] or o.startswith(names[m] + ".") for o in outputs)
    ]
    units = [u for u in candidates if not any(c.startswith(u + ".") for c in candidates)]
    units.sort(key=lambda u: first_run[_get(model, u)])
    return stacks, units


def _index_of(values: torch.Tensor, full_shape: torch.Size) -> list:
    """Per-dim kept indices of a tensor whose entries were its own flat indices before pruning."""
    flat = values.detach().cpu().round().long()  # index maps live on the CPU
    strides = torch.tensor(list(torch.empty(full_shape).stride()), dtype=torch.long)
    spec = []
    recon = torch.zeros_like(flat)
    for d, (n_full, stride) in enumerate(zip(full_shape, strides.tolist())):
        first = flat.movedim(d, 0).reshape(flat.shape[d], -1)[:, 0]  # entries along dim d
        idx = (first // stride) % n_full
        shape = [1] * flat.dim()
        shape[d] = -1
        recon = recon + (idx * stride).view(shape)
        spec.append(len(idx) if torch.equal(idx, torch.arange(len(idx))) else idx)
    if not torch.equal(recon.expand_as(flat), flat):
        raise UnsupportedModelError("pruning produced a tensor that is not a product of per-dim index sets")
    return spec


def shrink(model: nn.Module, example_input: torch.Tensor, analysis: Analysis, *,
           keep: dict[str, int], depth: dict[str, int] | None = None,
           remove: tuple[str, ...] | list[str] = ()) -> tuple[nn.Module, IndexMap]:
    """A physically smaller copy of ``model`` and the map of its tensors into the full ones.

    Args:
        keep: channel group root -> channels to keep (a prefix of the group's channels).
        depth: block stack container -> blocks to keep from the start of the stack.
        remove: names of units (``analysis.units``) to replace by :class:`Skip`.

    Returns:
        ``(small, index_map)``; ``small`` has garbage weights: fill them with :func:`take` slices.
    """
    full = {n: t for n, t in model.state_dict().items()}
    probe = copy.deepcopy(model).eval()
    for stack in analysis.stacks:
        n_keep = (depth or {}).get(stack.container, len(stack.indices))
        for i in stack.indices[n_keep:]:
            replace_submodule(probe, f"{stack.container}.{i}" if stack.container else str(i), Skip())
    for name in remove:
        if name not in analysis.units:
            raise ConfigError(f"{name!r} is not a removable unit of {type(model).__name__}; "
                              f"removable units: {analysis.units}")
        replace_submodule(probe, name, Skip())
    rnns = recurrent.recurrent_layers(probe)  # planned on real weights, applied to the tagged copy below
    rnn_plan = recurrent.hidden_plan(probe, example_input, {
        g.root: keep[g.root] for g in analysis.groups if g.root in rnns and keep.get(g.root, g.size) < g.size})
    traced = depgraph.trace(probe, example_input)
    # Tag every entry with its own flat index (float64 is exact to 2**53), prune, and read off which
    # entries survived: that is the index map. .double() keeps the Parameter objects the graph holds.
    probe.double()
    with torch.no_grad():
        for t in probe.state_dict().values():
            if t.is_floating_point():
                t.copy_(torch.arange(t.numel(), dtype=torch.float64).view(t.shape))
    # a cut block may have held a group's root, so match groups by any of their output-channel modules
    by_source = {s: g for g in analysis.groups for s in g.sources}
    heads: dict[str, int] = {}
    outputs = [_get(probe, n) for n in analysis.output_layers]
    for root, group, members, _ in depgraph.groups(probe, traced, outputs):
        g = by_source.get(root)
        if g is None or group is None or keep.get(g.root, g.size) >= g.size:
            continue
        if len(group[0].idxs) != g.size:
            raise UnsupportedModelError(f"channel group of {root} changed size after cutting blocks")
        n = keep[g.root]
        depgraph.prune(group, list(range(n, g.size)), root, model)
        if g.unit > 1:
            for m in members:
                heads[m.rpartition(".")[0]] = n // g.unit
    for parent, n_heads in heads.items():
        owner = _get(probe, parent)
        for attr in _HEAD_ATTRS:
            if isinstance(getattr(owner, attr, None), int):
                setattr(owner, attr, n_heads)
    probe = recurrent.shrink_hidden(probe, rnn_plan)
    index_map = {}
    for name, t in probe.state_dict().items():
        if t.is_floating_point():
            index_map[name] = _index_of(t, full[name].shape)
    dtype = next((t.dtype for t in full.values() if t.is_floating_point()), torch.float32)
    small = probe.to(dtype)
    try:
        _run(small, example_input)
    except Exception as e:
        raise UnsupportedModelError(
            f"{type(model).__name__} does not run after shrinking groups {sorted(keep)} "
            f"({type(e).__name__}: {e}); pass ignore=[...] naming the module to keep full") from e
    return small, index_map


def take(tensor: torch.Tensor, spec: list) -> torch.Tensor:
    """Slice ``tensor`` by one :data:`IndexMap` entry (views for prefixes, so gradients flow back)."""
    for d, s in enumerate(spec):
        if isinstance(s, int):
            if s != tensor.shape[d]:
                tensor = tensor.narrow(d, 0, s)
        else:
            tensor = tensor.index_select(d, s.to(tensor.device))
    return tensor
