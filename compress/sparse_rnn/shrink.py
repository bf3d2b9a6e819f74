"""Physically remove masked hidden units: a smaller dense RNN, and narrower layers that read it.

With its rows zeroed in every gate block and its biases zeroed, a unit's hidden state stays exactly 0
from a zero initial state (tanh(0) = relu(0) = 0; a GRU's ``h = (1 - z) * n + z * h_prev`` with
``n = 0``; an LSTM's ``c = f * c_prev + i * 0``). So its column in whatever reads the RNN multiplies
zeros, and deleting unit and column together changes nothing: the shrunk model equals the masked one.

Which columns of the *consumers* (the Linear head, a following RNN, in any user model) belong to the
removed units is found by a probe rather than assumed: the removed units are given random weights, and
a consumer input column that then changes, while it is exactly 0 in the masked model, is one of theirs.
Each consumer's input is reset to the masked model's during the probe, so a change never leaks past the
first layer that reads the RNN. The shrunk model is then checked against the masked one.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from slimkit.runtime.errors import UnsupportedModelError

from ..cost import RNN_GATES
from ..modules import hooks, replace_submodule
from .masks import rnn_modules, unit_rows

__all__ = ["find_consumers", "shrink_units"]

_CONSUMERS = (nn.Linear, nn.RNNBase)


def _record_inputs(model: nn.Module, x: torch.Tensor, replace: dict[str, list] | None = None) -> dict[str, list]:
    """Inputs of every Linear/RNN per call; with ``replace``, each call's input is swapped for the given one."""
    seen: dict[str, list] = {}
    handles = []
    for name, mod in model.named_modules():
        if isinstance(mod, _CONSUMERS):
            def pre(m, args, _n=name):
                calls = seen.setdefault(_n, [])
                calls.append(args[0].detach().clone())
                if replace is not None and len(replace.get(_n, [])) >= len(calls):
                    return (replace[_n][len(calls) - 1],) + tuple(args[1:])
                return None
            handles.append(mod.register_forward_pre_hook(pre))
    with hooks(handles), torch.no_grad():
        model(x)
    return seen


@torch.no_grad()
def find_consumers(model: nn.Module, kept: dict[str, list[list[int]]], x: torch.Tensor) -> dict[str, list[int]]:
    """Input columns each consumer keeps: ``{module name: kept column indices}`` for every Linear/RNN
    outside the pruned modules whose input holds removed units.

    Raises:
        UnsupportedModelError: a removed unit reaches a layer through something that does not map 0 to 0
            (a LayerNorm, a sigmoid, an additive constant), so its column cannot be dropped exactly.
    """
    model = copy.deepcopy(model).eval()
    masked = _record_inputs(model, x)
    gen = torch.Generator().manual_seed(0)
    params = dict(model.named_parameters())
    for mname, m in rnn_modules(model).items():
        pre = f"{mname}." if mname else ""
        dirs = 2 if m.bidirectional else 1
        for i, units in enumerate(kept[mname]):
            layer, d = divmod(i, dirs)
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            removed = sorted(set(range(m.hidden_size)) - set(units))
            if not removed:
                continue
            rows = unit_rows(RNN_GATES[m.mode], m.hidden_size, removed)
            for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                p = params.get(f"{pre}{kind}{sfx}")
                if p is not None:  # small random weights plus a positive bias: h != 0 for any input
                    p[rows] = (0.1 * torch.randn(p[rows].shape, generator=gen) + (kind == "bias_ih")).to(p)
            # keep the probe inside this layer: the next layer's columns of removed units stay 0
    probed = _record_inputs(model, x, replace=masked)
    consumers = {}
    for name, calls in probed.items():
        changed = torch.zeros(calls[0].shape[-1], dtype=torch.bool)
        zero = torch.ones_like(changed)
        for got, ref in zip(calls, masked[name], strict=True):
            changed |= (got != ref).reshape(-1, got.shape[-1]).any(0)
            zero &= (ref == 0).reshape(-1, ref.shape[-1]).all(0)
        if not changed.any():
            continue
        if not bool((zero | ~changed).all()):
            raise UnsupportedModelError(
                f"the removed hidden units reach {name} through an operation that does not keep zeros "
                f"(a normalisation, an activation with f(0) != 0, an added constant), so their columns "
                f"cannot be dropped exactly; use structured=False (unstructured pruning) for this model")
        consumers[name] = torch.nonzero(~changed).flatten().tolist()
    return consumers


def shrink_units(model: nn.Module, kept: dict[str, list[list[int]]], consumers: dict[str, list[int]]
                 ) -> nn.Module:
    """A copy of ``model`` whose recurrent modules keep only the ``kept`` units (per layer and direction)
    and whose ``consumers`` keep only the given input columns. Weights are sliced from ``model``."""
    small = copy.deepcopy(model)
    rnns = rnn_modules(small)
    if "" in rnns:
        raise UnsupportedModelError("the model is itself an nn.RNNBase; wrap it in a module with a head")
    for name, cols in consumers.items():
        mod = small.get_submodule(name) if name else small
        if isinstance(mod, nn.Linear) and name not in rnns:
            new = nn.Linear(len(cols), mod.out_features, bias=mod.bias is not None,
                            device=mod.weight.device, dtype=mod.weight.dtype)
            with torch.no_grad():
                new.weight.copy_(mod.weight[:, cols])
                if mod.bias is not None:
                    new.bias.copy_(mod.bias)
            replace_submodule(small, name, new)
    for mname, m in rnns.items():
        units = kept.get(mname)
        cols0 = consumers.get(mname)
        if units is None and cols0 is None:
            continue
        dirs = 2 if m.bidirectional else 1
        h = m.hidden_size
        units = units or [list(range(h))] * (m.num_layers * dirs)
        if len({len(u) for u in units}) != 1:
            raise UnsupportedModelError(f"{mname}: every layer and direction must keep the same number of units")
        h_new = len(units[0])
        in_cols = cols0 if cols0 is not None else list(range(m.input_size))
        new = type(m)(len(in_cols), h_new, num_layers=m.num_layers, bias=m.bias, batch_first=m.batch_first,
                      dropout=m.dropout, bidirectional=m.bidirectional,
                      **({"nonlinearity": m.nonlinearity} if isinstance(m, nn.RNN) else {}),
                      device=m.weight_ih_l0.device, dtype=m.weight_ih_l0.dtype)
        with torch.no_grad():
            for i, u in enumerate(units):
                layer, d = divmod(i, dirs)
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                rows = unit_rows(RNN_GATES[m.mode], m.hidden_size, u)
                if layer == 0:
                    cols = torch.tensor(in_cols, dtype=torch.long)
                else:
                    cols = torch.cat([d2 * h + torch.tensor(units[(layer - 1) * dirs + d2])
                                      for d2 in range(dirs)])
                getattr(new, f"weight_ih{sfx}").copy_(getattr(m, f"weight_ih{sfx}")[rows][:, cols])
                getattr(new, f"weight_hh{sfx}").copy_(getattr(m, f"weight_hh{sfx}")[rows][:, u])
                if m.bias:
                    for kind in ("bias_ih", "bias_hh"):
                        getattr(new, f"{kind}{sfx}").copy_(getattr(m, f"{kind}{sfx}")[rows])
        new.train(m.training)
        replace_submodule(small, mname, new)
    return small
