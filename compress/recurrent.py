"""Hidden units of recurrent layers as channel groups, for the width-slicing methods (SortedNet, N2N).

torch-pruning's dependency graph keeps ``nn.RNN``/``nn.GRU``/``nn.LSTM`` whole. Their hidden units can
shrink all the same, with the unit removal of :mod:`slimkit.compress.sparse_rnn.shrink` (Wen et al.'s
ISS groups): a unit owns its rows in every gate block of ``weight_ih``/``weight_hh`` and the biases, its
``weight_hh`` column, the next layer's input columns, and the columns of whatever reads the RNN (found
by a probe, :func:`~slimkit.compress.sparse_rnn.shrink.find_consumers`). Keeping the first ``n`` units of
every layer and direction is a prefix, as SortedNet needs; :func:`slimkit.compress.graph.shrink` reads
the index maps off the shrunk copy like any other group's.

A recurrent layer is a group when keeping half its units gives exactly the model with the other half's
rows zeroed (checked on the example input); otherwise it stays full, with the reason.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from slimkit.runtime.errors import UnsupportedModelError

from .cost import RNN_GATES
from .sparse_rnn.masks import unit_rows
from .sparse_rnn.shrink import find_consumers, shrink_units

__all__ = ["recurrent_layers", "rnn_group", "hidden_plan", "shrink_hidden"]


def recurrent_layers(model: nn.Module) -> dict[str, nn.RNNBase]:
    """Every ``nn.RNN``/``nn.GRU``/``nn.LSTM`` below the root of ``model``, by name."""
    return {n: m for n, m in model.named_modules() if n and isinstance(m, nn.RNNBase)}


def _kept(model: nn.Module, keep: dict[str, int]) -> dict[str, list[list[int]]]:
    """Units kept per layer and direction of every recurrent layer: a prefix of ``keep[name]``, else all."""
    out = {}
    for name, m in recurrent_layers(model).items():
        n = keep.get(name, m.hidden_size)
        out[name] = [list(range(n))] * (m.num_layers * (2 if m.bidirectional else 1))
    return out


def _masked(model: nn.Module, kept: dict[str, list[list[int]]]) -> nn.Module:
    """A copy of ``model`` whose removed units are cut out by zeros: their rows (so their hidden state stays
    0) and the columns that read them (so the kept units do not depend on them)."""
    masked = copy.deepcopy(model).eval()
    with torch.no_grad():
        for name, m in recurrent_layers(masked).items():
            dirs = 2 if m.bidirectional else 1
            gone = sorted(set(range(m.hidden_size)) - set(kept[name][0]))
            if not gone:
                continue
            rows = unit_rows(RNN_GATES[m.mode], m.hidden_size, gone)
            for layer in range(m.num_layers):
                for d in range(dirs):
                    sfx = f"_l{layer}" + ("_reverse" if d else "")
                    for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                        p = getattr(m, f"{kind}{sfx}", None)
                        if p is not None:
                            p[rows] = 0
                    getattr(m, f"weight_hh{sfx}")[:, gone] = 0  # kept units do not read removed ones
                    if layer:  # nor does the next layer
                        w = getattr(m, f"weight_ih{sfx}")
                        for d2 in range(dirs):
                            w[:, [d2 * m.hidden_size + u for u in gone]] = 0
    return masked


def rnn_group(model: nn.Module, name: str, example_input: torch.Tensor) -> tuple[list[str], str | None]:
    """``(consumers, None)`` when the hidden units of recurrent layer ``name`` may shrink (the layers that
    read it), else ``([], reason)``."""
    m = model.get_submodule(name)
    if m.mode not in RNN_GATES:
        return [], f"mode {m.mode!r} is not one of {sorted(RNN_GATES)}"
    if m.proj_size:
        return [], f"an LSTM with proj_size={m.proj_size} keeps its hidden size"
    if m.hidden_size < 2:
        return [], "one hidden unit"
    kept = _kept(model, {name: m.hidden_size // 2})
    masked = _masked(model, kept)
    try:
        consumers = find_consumers(masked, kept, example_input)
        small = shrink_units(masked, kept, consumers).eval()
        with torch.no_grad():
            a, b = small(example_input), masked(example_input)
    except UnsupportedModelError as e:
        return [], str(e).split("; use structured=False")[0]
    except Exception as e:  # a forward that depends on the hidden size in a way the probe cannot follow
        return [], f"the model does not run with fewer hidden units ({type(e).__name__}: {e})"
    if a.shape != b.shape or not torch.allclose(a, b, rtol=1e-4, atol=1e-5):
        return [], "removing hidden units changes the model's output (its forward uses the hidden size itself)"
    return sorted(consumers), None


def hidden_plan(model: nn.Module, example_input: torch.Tensor, keep: dict[str, int]) -> tuple[dict, dict]:
    """What :func:`shrink_hidden` does to keep the first ``keep[name]`` hidden units of each named recurrent
    layer of ``model`` (as it stands: with blocks already removed): ``(units kept per layer and direction,
    input columns each consumer keeps)``."""
    keep = {n: k for n, k in keep.items() if k < model.get_submodule(n).hidden_size}
    if not keep:
        return {}, {}
    kept = _kept(model, keep)
    return {n: kept[n] for n in keep}, find_consumers(_masked(model, kept), kept, example_input)


def shrink_hidden(model: nn.Module, plan: tuple[dict, dict]) -> nn.Module:
    """A copy of ``model`` (with the same modules as the one :func:`hidden_plan` read, possibly narrowed
    elsewhere) with the planned hidden units and consumer columns only; weights sliced from ``model``."""
    kept, consumers = plan
    return shrink_units(model, kept, consumers) if kept else model
