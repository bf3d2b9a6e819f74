"""torch-pruning's ``DependencyGraph``, made safe to run on a user's model: bounded in time, fast on RNNs.

:mod:`slimkit.compress.graph` finds coupled channels with torch-pruning (Fang et al., "DepGraph: Towards
Any Structural Pruning", CVPR 2023), which traces the model's autograd graph. Three things stand between
it and a user's model, and this module handles them:

* **Recurrent layers unroll.** On CPU an ``nn.GRU`` (and ``nn.RNN``, and an LSTM off the oneDNN path)
  records one fused cell per time step, layer and direction, joined by unbind/cat/split nodes, and
  torch-pruning's shape inference recurses through every path of that graph: 365,000 calls for a 2-layer
  GRU over 8 steps; 5 s per trace for one bidirectional GRU layer over 128 steps, which N2N's default
  search traces about 110 times (9 minutes before any training). Recurrent layers are kept whole by the
  channel analysis anyway (their hidden units are a group of their own, :mod:`slimkit.compress.recurrent`),
  so while tracing each one is replaced by a stand-in with the same coupling (input features in,
  ``hidden x directions`` features out): a Linear over the last axis (0.001 s per trace).
* **No time bound.** Tracing and each group's search run under
  :func:`~slimkit.compress.timebox.time_limit` (:data:`~slimkit.compress.timebox.ANALYSIS_SECONDS`); a
  model that exceeds it is refused with :class:`UnsupportedModelError` naming the module being resolved.
* **A concat on another axis** (a key/value cache, the two directions of an RNN) makes torch-pruning 1.6
  sum an unknown width and raise a ``TypeError``; it is skipped, as torch-pruning means to.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from slimkit.runtime.errors import UnsupportedModelError

from . import timebox
from .modules import replace_submodule
from .timebox import OutOfTime, time_limit

__all__ = ["ROOT_TYPES", "Traced", "RNNStandIn", "trace", "groups", "split_sources", "prune"]

ROOT_TYPES = (nn.modules.conv._ConvNd, nn.Linear)


class RNNStandIn(nn.Module):
    """Takes an ``nn.RNNBase``'s place while torch-pruning traces: the same coupling (input features in,
    ``hidden x directions`` features out) as one Linear (``proj``) over the last axis, and the same output
    structure, without the unrolled graph. Never runs outside a trace."""

    def __init__(self, rnn: nn.RNNBase):
        super().__init__()
        dirs, out = 2 if rnn.bidirectional else 1, rnn.proj_size or rnn.hidden_size
        self.proj = nn.Linear(rnn.input_size, out * dirs, device=rnn.weight_ih_l0.device,
                              dtype=rnn.weight_ih_l0.dtype)
        self.out_size, self.rnn, self.states = out, [rnn], (rnn.num_layers * dirs, rnn.hidden_size)  # list: no submodule

    def forward(self, x, hx=None):
        """``(B, T, in) -> ((B, T, out x dirs), zero states)`` (batch second without ``batch_first``)."""
        if isinstance(x, nn.utils.rnn.PackedSequence):
            return self.rnn[0](x, hx)  # traced through: correct, only slower
        y = self.proj(x)
        batch = (x.shape[0] if self.rnn[0].batch_first else x.shape[1]) if x.dim() == 3 else None
        shape = (self.states[0],) + ((batch,) if batch is not None else ()) + (self.out_size,)
        h = torch.zeros(shape, dtype=x.dtype, device=x.device)
        if isinstance(self.rnn[0], nn.LSTM):
            return y, (h, torch.zeros(shape[:-1] + (self.states[1],), dtype=x.dtype, device=x.device))
        return y, h


@dataclass
class Traced:
    """A traced model: torch-pruning's graph and every traced module's name (stand-ins by their RNN's)."""

    graph: object
    names: dict[nn.Module, str]
    stand_ins: set[int]


@contextlib.contextmanager
def _concat_guard() -> Iterator[None]:
    """Skip, rather than fail on, a concat whose input widths torch-pruning cannot infer (see the module
    docstring); for the duration of a trace or a group search."""
    from torch_pruning.dependency import index_mapping

    original = index_mapping.update_concat_index_mapping

    def guarded(graph, node):
        try:
            return original(graph, node)
        except TypeError:
            return None

    index_mapping.update_concat_index_mapping = guarded
    try:
        yield
    finally:
        index_mapping.update_concat_index_mapping = original


def trace(model: nn.Module, example_input: torch.Tensor) -> Traced:
    """Trace ``model`` (in place, restored before returning) into torch-pruning's dependency graph.

    Raises:
        UnsupportedModelError: the trace fails, or does not finish within ``ANALYSIS_SECONDS``.
    """
    import torch_pruning as tp

    seconds = timebox.ANALYSIS_SECONDS
    rnns = [(n, m) for n, m in model.named_modules() if n and isinstance(m, nn.RNNBase)]
    stand_ins = {n: RNNStandIn(m) for n, m in rnns}
    for n, s in stand_ins.items():
        replace_submodule(model, n, s)
    try:
        names = {m: n for n, m in model.named_modules()}
        names.update({s.proj: n for n, s in stand_ins.items()})  # an RNN's coupling goes by the RNN's name
        with torch.enable_grad(), _concat_guard(), time_limit(seconds):  # traced through autograd
            graph = tp.DependencyGraph().build_dependency(model, example_inputs=example_input, verbose=False)
    except OutOfTime as e:
        raise UnsupportedModelError(
            f"tracing {type(model).__name__} to find coupled channels {e}; slimkit refuses rather than keep "
            "you waiting (a model whose autograd graph is very large or unusual)") from None
    except Exception as e:  # tracing a foreign model can fail in many ways; name it
        raise UnsupportedModelError(
            f"could not trace {type(model).__name__} to find coupled channels ({type(e).__name__}: {e}); "
            "slimkit needs a model whose forward takes one tensor and has no data-dependent control flow"
        ) from e
    finally:
        for n, m in rnns:
            replace_submodule(model, n, m)
    return Traced(graph, names, {id(s.proj) for s in stand_ins.values()})


def groups(model: nn.Module, traced: Traced, ignored: list[nn.Module]):
    """Yield ``(root, group, members, sources)`` for every group of coupled channels of a traced model.

    torch-pruning's ``get_all_groups``, one root at a time, so that a root whose coupled channels cannot be
    resolved is named: an error yields ``(root, None, [reason], [])`` (the group stays full); a search that
    does not end within ``ANALYSIS_SECONDS`` (all roots together) is refused. ``members`` name every module
    the group touches (an RNN by its own name), ``sources`` the conv/linear layers whose outputs it is.
    """
    graph, names = traced.graph, traced.names
    seconds = timebox.ANALYSIS_SECONDS
    ignored = list(ignored) + list(graph.IGNORED_LAYERS_IN_TRACING)
    visited: set[int] = set()
    end = time.monotonic() + seconds
    for m in list(graph.module2node):
        if not isinstance(m, ROOT_TYPES) or id(m) in traced.stand_ins or id(m) in visited \
                or any(m is i for i in ignored):
            continue
        pruner = graph.get_pruner_of_module(m)
        channels = pruner.get_out_channels(m) if pruner is not None else None
        if channels is None:
            continue
        name = names.get(m, type(m).__name__)
        try:
            with _concat_guard(), time_limit(max(0.0, end - time.monotonic())):
                group = graph.get_pruning_group(m, pruner.prune_out_channels, list(range(channels)))
        except OutOfTime:
            raise UnsupportedModelError(
                f"finding the channels coupled to {name} ({type(m).__name__}) in {type(model).__name__} did not "
                f"finish within {seconds:g} s; slimkit refuses rather than keep you waiting") from None
        except Exception as e:  # torch-pruning cannot follow this root's channels: keep them full
            yield name, None, [f"its coupled channels could not be resolved ({type(e).__name__}: {e})"], []
            continue
        outs = [d.target.module for d, _ in group if graph.is_out_channel_pruning_fn(d.handler)]
        visited.update(id(t) for t in outs)
        if any(t is i for t in outs for i in ignored):
            continue
        members = [names[d.target.module] for d, _ in group if d.target.module in names]
        sources = [names[d.target.module] for d, _ in group
                   if isinstance(d.target.module, ROOT_TYPES) and id(d.target.module) not in traced.stand_ins
                   and graph.is_out_channel_pruning_fn(d.handler)]
        yield name, group, members, sources


def split_sources(traced: Traced, sources: list[str]) -> list[str]:
    """Sources whose output is split into parts right away (a packed q/k/v projection such as GPT-2's
    ``c_attn``): a prefix of its channels is not a prefix of each part, so its group cannot shrink."""
    from torch_pruning import ops

    by_name = {n: m for m, n in traced.names.items()}
    nodes = traced.graph.module2node
    return [s for s in sources if any(o.type == ops.OPTYPE.SPLIT for o in nodes[by_name[s]].outputs)]


def prune(group, idxs: list[int], root: str, model: nn.Module) -> None:
    """Prune ``idxs`` of ``group`` (in place, in the traced model), within ``ANALYSIS_SECONDS``."""
    try:
        with _concat_guard(), time_limit(timebox.ANALYSIS_SECONDS):
            group.prune(idxs=idxs)
    except OutOfTime:
        raise UnsupportedModelError(f"shrinking the channels of {root} in {type(model).__name__} did not finish "
                                    f"within {timebox.ANALYSIS_SECONDS:g} s") from None
