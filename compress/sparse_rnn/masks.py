"""Masks for sparse recurrent layers: which tensors, which entries, and how they stay zero.

Magnitude masks follow See et al. (2016, class-blind = one global threshold), Narang et al. (2017,
"Exploring Sparsity in Recurrent Neural Networks", arXiv 1704.05119) and Zhu & Gupta (2017, "To prune,
or not to prune", arXiv 1710.01878: the cubic schedule); structured (hidden-unit) masks follow Wen et
al. (2018, "Learning Intrinsic Sparse Structures within LSTM", arXiv 1709.05027): a unit is its rows in
every gate block, its biases, its column of ``weight_hh`` and the next layer's input columns.

How masks are enforced: the parameters themselves are multiplied by the mask in place (so the module
stays a plain ``nn.RNNBase`` that every exporter understands, and ``_flat_weights``, which holds the
same Parameter objects, sees the zeros), a gradient hook zeroes the masked gradient entries (so Adam's
moments of pruned weights stay 0 and no update reaches them), and :meth:`Masks.apply` re-multiplies
after every optimiser step (a mask that tightens mid-training leaves old moments behind).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from slimkit.runtime.errors import UnsupportedModelError

from ..cost import RNN_GATES

__all__ = ["RecurrentWeight", "recurrent_weights", "rnn_modules", "Masks", "magnitude_masks", "unit_masks",
           "cubic_schedule", "sparsity_of", "size_metrics"]


@dataclass(frozen=True)
class RecurrentWeight:
    """One weight matrix of a recurrent module: ``weight_{kind}_l{layer}[_reverse]``."""

    module: str      # the nn.RNNBase's name in the model
    attr: str        # e.g. "weight_hh_l1_reverse"
    kind: str        # "ih", "hh" or "hr" (LSTM projection)
    layer: int
    direction: int   # 0 forward, 1 reverse
    gates: int       # row blocks: 4 LSTM (i, f, g, o), 3 GRU (r, z, n), 1 RNN; 1 for "hr"

    @property
    def name(self) -> str:
        """The parameter's name in the model, e.g. ``rnn.weight_hh_l0``."""
        return f"{self.module}.{self.attr}" if self.module else self.attr


def rnn_modules(model: nn.Module) -> dict[str, nn.RNNBase]:
    """Every ``nn.RNN`` / ``nn.GRU`` / ``nn.LSTM`` in ``model`` by name.

    Raises:
        UnsupportedModelError: there is none (the message names the recurrent cells it found instead).
    """
    found = {n: m for n, m in model.named_modules() if isinstance(m, nn.RNNBase)}
    if not found:
        cells = sorted({type(m).__name__ for m in model.modules() if isinstance(m, nn.RNNCellBase)})
        extra = (f" (it holds {', '.join(cells)}: step-by-step cells are not supported, use the "
                 "full-sequence modules)") if cells else ""
        raise UnsupportedModelError(
            f"{type(model).__name__} has no nn.RNN, nn.GRU or nn.LSTM{extra}; sparse_rnn prunes the weights "
            "of those modules (for conv/linear models use compress.sortednet or compress.n2n)")
    for n, m in found.items():
        if m.mode not in RNN_GATES:
            raise UnsupportedModelError(f"{n or type(m).__name__} has mode {m.mode!r}; supported: {sorted(RNN_GATES)}")
    return found


def recurrent_weights(model: nn.Module, kinds: tuple[str, ...] = ("ih", "hh")) -> list[RecurrentWeight]:
    """The weight matrices of every recurrent module, in module order (``hr`` counts as ``hh``)."""
    out = []
    for mname, m in rnn_modules(model).items():
        for layer in range(m.num_layers):
            for d in range(2 if m.bidirectional else 1):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                for kind in ("ih", "hh", "hr"):
                    if not hasattr(m, f"weight_{kind}{sfx}") or (kind if kind != "hr" else "hh") not in kinds:
                        continue
                    gates = 1 if kind == "hr" else RNN_GATES[m.mode]
                    out.append(RecurrentWeight(mname, f"weight_{kind}{sfx}", kind, layer, d, gates))
    return out


class Masks:
    """Boolean keep-masks on named parameters, enforced in forward, backward and after every step."""

    def __init__(self, model: nn.Module, names: list[str]):
        params = dict(model.named_parameters())
        self.params = {n: params[n] for n in names}
        self.masks = {n: torch.ones_like(p, dtype=torch.bool) for n, p in self.params.items()}
        self._hooks: list = []

    def set(self, masks: dict[str, torch.Tensor]) -> None:
        """Replace some masks and zero the newly masked weights."""
        for n, m in masks.items():
            self.masks[n] = m.to(self.params[n].device)
        self.apply()

    @torch.no_grad()
    def apply(self) -> None:
        """Zero every masked weight (after each optimiser step)."""
        for n, p in self.params.items():
            p.mul_(self.masks[n])

    def hook(self) -> None:
        """Zero masked gradient entries in backward (call :meth:`unhook` when training ends)."""
        for n, p in self.params.items():
            self._hooks.append(p.register_hook(lambda g, n=n: g * self.masks[n]))

    def unhook(self) -> None:
        """Remove the gradient hooks :meth:`hook` installed."""
        for h in self._hooks:
            h.remove()
        self._hooks.clear()


def magnitude_masks(model: nn.Module, weights: list[RecurrentWeight], sparsity: float, scope: str,
                    current: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Keep-masks pruning the smallest-magnitude entries to exactly ``sparsity`` within each scope.

    ``scope``: ``"global"`` (one threshold over every tensor), ``"layer"`` (each tensor separately) or
    ``"gate"`` (each gate block of each tensor separately). Entries already pruned in ``current`` are
    pruned first, so masks only ever tighten. Exact counts (not a threshold), so ties cannot overshoot.
    """
    params = dict(model.named_parameters())
    scores = {}
    for w in weights:
        s = params[w.name].detach().abs().float()
        if current is not None and w.name in current:
            s = torch.where(current[w.name], s, torch.full_like(s, -1.0))
        scores[w.name] = s
    if scope == "global":
        groups = [[(w.name, None) for w in weights]]
    elif scope == "layer":
        groups = [[(w.name, None)] for w in weights]
    else:
        groups = [[(w.name, g)] for w in weights for g in range(w.gates)]
    masks = {w.name: torch.ones_like(scores[w.name], dtype=torch.bool) for w in weights}
    gates = {w.name: w.gates for w in weights}
    for group in groups:
        views = [scores[n] if g is None else scores[n].chunk(gates[n], 0)[g] for n, g in group]
        flat = torch.cat([v.reshape(-1) for v in views])
        k = int(round(sparsity * flat.numel()))
        if k == 0:
            continue
        keep = torch.ones_like(flat, dtype=torch.bool)
        keep[torch.topk(flat, k, largest=False, sorted=False).indices] = False
        offset = 0
        for (n, g), v in zip(group, views, strict=True):
            part = keep[offset:offset + v.numel()].view_as(v)
            offset += v.numel()
            if g is None:
                masks[n] = part
            else:
                masks[n].chunk(gates[n], 0)[g].copy_(part)
    return masks


def unit_rows(gates: int, hidden: int, units) -> torch.Tensor:
    """Rows of a recurrent weight (gate blocks stacked) that belong to hidden ``units`` (indices), in every gate."""
    units = torch.as_tensor(units, dtype=torch.long)
    return torch.cat([g * hidden + units for g in range(gates)])


def unit_masks(model: nn.Module, fraction: float, current: dict[str, torch.Tensor] | None = None
               ) -> tuple[dict[str, torch.Tensor], dict[str, list[list[int]]]]:
    """Masks removing ``round(fraction * hidden_size)`` whole hidden units per layer and direction.

    A unit's importance is the L2 norm of everything it owns: its rows in every gate block of
    ``weight_ih``/``weight_hh`` and the biases, its ``weight_hh`` column and the next layer's input
    columns (Wen et al.'s ISS group). Units already removed in ``current`` stay removed. Every layer and
    direction loses the same number (``nn.RNNBase`` has one ``hidden_size``).

    Returns:
        ``(masks over every weight and bias of the recurrent modules, kept units per module as
        [[units of layer 0 fwd], [layer 0 reverse], [layer 1 fwd], ...])``.
    """
    params = dict(model.named_parameters())
    masks: dict[str, torch.Tensor] = {}
    kept: dict[str, list[list[int]]] = {}
    for mname, m in rnn_modules(model).items():
        if m.proj_size:
            raise UnsupportedModelError(f"{mname or 'the model'} is an LSTM with proj_size={m.proj_size}; "
                                        "structured unit removal needs proj_size=0 (unstructured works)")
        h, g, dirs = m.hidden_size, RNN_GATES[m.mode], 2 if m.bidirectional else 1
        n_keep = max(1, h - int(round(fraction * h)))
        pre = f"{mname}." if mname else ""
        sfx = [f"_l{k}" + ("_reverse" if d else "") for k in range(m.num_layers) for d in range(dirs)]
        kept[mname] = []
        for i, s in enumerate(sfx):
            layer = i // dirs
            score = torch.zeros(h)
            for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                t = params.get(f"{pre}{kind}{s}")
                if t is not None:
                    rows = t.detach().float().reshape(g, h, -1)  # (gates, H, in or 1)
                    score += rows.pow(2).sum(dim=(0, 2)).cpu()
            score += params[f"{pre}weight_hh{s}"].detach().float().pow(2).sum(0).cpu()
            if layer + 1 < m.num_layers:
                d = i % dirs
                for s2 in sfx[(layer + 1) * dirs:(layer + 2) * dirs]:
                    cols = params[f"{pre}weight_ih{s2}"].detach().float()[:, d * h:(d + 1) * h]
                    score += cols.pow(2).sum(0).cpu()
            if current is not None and f"{pre}weight_hh{s}" in current:
                alive = current[f"{pre}weight_hh{s}"].cpu().reshape(g, h, h).any(dim=(0, 2))
                score = torch.where(alive, score, torch.full_like(score, -1.0))
            units = torch.topk(score, n_keep).indices.sort().values
            kept[mname].append(units.tolist())
        for i, s in enumerate(sfx):
            layer, d = divmod(i, dirs)
            units = torch.tensor(kept[mname][i])
            row = torch.zeros(g * h, dtype=torch.bool)
            row[unit_rows(g, h, units)] = True
            col_hh = torch.zeros(h, dtype=torch.bool)
            col_hh[units] = True
            w_ih = params[f"{pre}weight_ih{s}"]
            col_ih = torch.ones(w_ih.shape[1], dtype=torch.bool)
            if layer > 0:
                col_ih = torch.zeros(dirs * h, dtype=torch.bool)
                for d2 in range(dirs):
                    col_ih[d2 * h + torch.tensor(kept[mname][(layer - 1) * dirs + d2])] = True
            dev = w_ih.device
            masks[f"{pre}weight_ih{s}"] = (row[:, None] & col_ih[None, :]).to(dev)
            masks[f"{pre}weight_hh{s}"] = (row[:, None] & col_hh[None, :]).to(dev)
            for kind in ("bias_ih", "bias_hh"):
                if f"{pre}{kind}{s}" in params:
                    masks[f"{pre}{kind}{s}"] = row.to(dev)
    return masks, kept


def cubic_schedule(final: float, events: int) -> list[float]:
    """Zhu & Gupta's sparsity at each of ``events`` pruning steps: ``s_f * (1 - (1 - k / n)^3)``, k = 1..n."""
    return [final * (1 - (1 - k / events) ** 3) for k in range(1, events + 1)]


def sparsity_of(model: nn.Module, weights: list[RecurrentWeight]) -> float:
    """Fraction of exactly-zero entries over ``weights``."""
    params = dict(model.named_parameters())
    total = sum(params[w.name].numel() for w in weights)
    zeros = sum(int((params[w.name] == 0).sum()) for w in weights)
    return zeros / max(total, 1)


def size_metrics(model: nn.Module) -> dict[str, float]:
    """Honest storage figures of the weights: dense float bytes, nonzeros, and deflate-compressed bytes.

    ``compressed_bytes`` is what zlib (the deflate of a ``.zip``) makes of the raw weight bytes, a close
    proxy of a zipped ONNX file; ``sparse_bytes`` is a CSR-style layout (float32 values, int32 column
    indices, one int32 row pointer per row) of every parameter, or its dense size where that is smaller.
    """
    import zlib

    dense, nonzero, sparse = 0, 0, 0
    chunks = []
    for p in model.parameters():
        t = p.detach().cpu().contiguous()
        dense += t.numel() * t.element_size()
        nnz = int((t != 0).sum())
        nonzero += nnz
        rows = t.shape[0] if t.dim() > 1 else 1
        sparse += min(t.numel() * t.element_size(), nnz * (t.element_size() + 4) + 4 * (rows + 1))
        chunks.append(t.numpy().tobytes())
    return {"nonzero_params": float(nonzero), "dense_bytes": float(dense), "sparse_bytes": float(sparse),
            "compressed_bytes": float(len(zlib.compress(b"".join(chunks), 6)))}
