"""Surgery for stock layers that hide their parts: PyTorch's Transformer layers made explicit.

``nn.MultiheadAttention`` packs the query, key and value projections into one ``in_proj_weight``, and
``nn.TransformerEncoderLayer`` calls its activation as a plain function and, in eval mode, runs one fused
kernel that never calls its submodules. Nothing that works module by module can see into them: the
channel analysis cannot shrink their heads or feed-forward width, SNNK cannot find the feed-forward
block. :func:`make_explicit` rewrites them, in place, into equivalent modules built from ``nn.Linear``
layers and an activation module:

* ``nn.TransformerEncoder`` -> :class:`ExplicitEncoder` (same ``layers``, ``norm``);
* ``nn.TransformerEncoderLayer`` -> :class:`ExplicitEncoderLayer` (same ``self_attn``, ``linear1``,
  ``dropout``, ``linear2``, ``norm1``, ``norm2``, ``dropout1``, ``dropout2``; ``activation`` a module);
* ``nn.MultiheadAttention`` -> :class:`ExplicitAttention` (``q_proj``, ``k_proj``, ``v_proj``,
  ``out_proj``; the head count follows the projections' width, so a copy with fewer heads' rows runs).

Outputs are equal before and after (to float rounding; the explicit modules run the same math as the
stock layers' slow path). One difference: a stock ``nn.TransformerEncoder`` in eval mode with a
``src_key_padding_mask`` may run on nested tensors and return zeros at padded positions; the explicit
encoder computes them like every other position (their values are never attended to).

Every compression method applies this surgery to its copy of the model (:func:`slimkit.compress.preamble.
adapt`); a saved family redoes it when it loads.

Example:
    >>> layer = nn.TransformerEncoderLayer(32, 4, 64, batch_first=True).eval()
    >>> model = nn.Sequential(layer)
    >>> model, names = make_explicit(model)
    >>> names
    ['0']
    >>> type(model[0]).__name__, type(model[0].self_attn.q_proj).__name__
    ('ExplicitEncoderLayer', 'Linear')
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .modules import replace_submodule

__all__ = ["ExplicitAttention", "ExplicitEncoderLayer", "ExplicitEncoder", "make_explicit"]


def _float_mask(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """A boolean mask (True = not allowed) as an additive float mask; float masks pass through."""
    if mask is None or mask.is_floating_point():
        return None if mask is None else mask.to(dtype)
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, float("-inf"))


class ExplicitAttention(nn.Module):
    """``nn.MultiheadAttention`` with its projections as separate ``nn.Linear`` layers.

    Same call (``query, key, value, key_padding_mask, need_weights, attn_mask, average_attn_weights,
    is_causal``), same result tuple ``(output, weights or None)``. The head count is the projections'
    width over ``head_dim``, so a copy whose ``q_proj``/``k_proj``/``v_proj`` keep some heads' rows (and
    ``out_proj`` the matching columns) runs with fewer heads.
    """

    def __init__(self, embed_dim: int, num_heads: int, *, kdim: int | None = None, vdim: int | None = None,
                 bias: bool = True, dropout: float = 0.0, batch_first: bool = False):
        super().__init__()
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, embed_dim // num_heads
        self.dropout, self.batch_first = dropout, batch_first
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.k_proj = nn.Linear(kdim or embed_dim, embed_dim, bias=bias)
        self.v_proj = nn.Linear(vdim or embed_dim, embed_dim, bias=bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)

    @classmethod
    def from_stock(cls, mha: nn.MultiheadAttention) -> ExplicitAttention:
        """The explicit twin of ``mha``, with its weights (split from ``in_proj_weight`` when packed)."""
        new = cls(mha.embed_dim, mha.num_heads, kdim=mha.kdim, vdim=mha.vdim, bias=mha.in_proj_bias is not None,
                  dropout=mha.dropout, batch_first=mha.batch_first)
        with torch.no_grad():
            if mha._qkv_same_embed_dim:
                weights = mha.in_proj_weight.chunk(3)
            else:
                weights = (mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight)
            biases = mha.in_proj_bias.chunk(3) if mha.in_proj_bias is not None else (None,) * 3
            for proj, w, b in zip((new.q_proj, new.k_proj, new.v_proj), weights, biases):
                proj.weight.copy_(w)
                if b is not None:
                    proj.bias.copy_(b)
            new.out_proj.load_state_dict(mha.out_proj.state_dict())
        return new.to(mha.out_proj.weight.device, mha.out_proj.weight.dtype).train(mha.training)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, t = x.shape[0], x.shape[1]
        return x.view(b, t, -1, self.head_dim).transpose(1, 2)  # (B, T, H*hd) -> (B, H, T, hd)

    def forward(self, query, key, value, key_padding_mask=None, need_weights: bool = True, attn_mask=None,
                average_attn_weights: bool = True, is_causal: bool = False):
        """``(B, T, E)`` (or ``(T, B, E)``, or ``(T, E)``) -> ``(output of the query's shape, weights or None)``."""
        unbatched = query.dim() == 2
        if unbatched:  # (T, E) -> (1, T, E)
            query, key, value = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)
            key_padding_mask = None if key_padding_mask is None else key_padding_mask.unsqueeze(0)
        elif not self.batch_first:  # (T, B, E) -> (B, T, E)
            query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
        b, t, s = query.shape[0], query.shape[1], key.shape[1]
        q, k, v = self._heads(self.q_proj(query)), self._heads(self.k_proj(key)), self._heads(self.v_proj(value))
        mask = _float_mask(attn_mask, q.dtype)
        if mask is not None and mask.dim() == 3:  # (B * H, T, S) -> (B, H, T, S)
            mask = mask.view(b, -1, t, s)
        pad = _float_mask(key_padding_mask, q.dtype)
        if pad is not None:  # (B, S) -> (B, 1, 1, S)
            pad = pad.view(b, 1, 1, s)
            mask = pad if mask is None else mask + pad
        if is_causal and mask is None:
            mask = torch.ones(t, s, dtype=torch.bool, device=q.device).triu(1)
            mask = _float_mask(mask, q.dtype)
        p = self.dropout if self.training else 0.0
        if need_weights:
            scores = q @ k.transpose(-2, -1) / self.head_dim ** 0.5  # (B, H, T, S)
            weights = torch.softmax(scores if mask is None else scores + mask, dim=-1)
            y = F.dropout(weights, p, self.training) @ v
        else:
            weights = None
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)  # (B, H, T, hd)
        y = self.out_proj(y.transpose(1, 2).reshape(b, t, -1))  # (B, T, E)
        if unbatched:
            y = y.squeeze(0)
        elif not self.batch_first:
            y = y.transpose(0, 1)
        if weights is not None:
            weights = weights.mean(dim=1) if average_attn_weights else weights
            weights = weights.squeeze(0) if unbatched else weights
        return y, weights


_ACTIVATIONS = {F.relu: nn.ReLU, F.gelu: nn.GELU}


class ExplicitEncoderLayer(nn.Module):
    """``nn.TransformerEncoderLayer`` without the fused fast path: every part a module that runs.

    Same call (``src, src_mask, src_key_padding_mask, is_causal``), same submodule names, and the
    activation as a module (``nn.ReLU``/``nn.GELU`` for the stock functions), so the feed-forward block is
    the chain ``linear1 -> activation -> dropout -> linear2``.
    """

    def __init__(self, self_attn: nn.Module, linear1: nn.Linear, linear2: nn.Linear, norm1: nn.Module,
                 norm2: nn.Module, activation: nn.Module, *, dropout: float = 0.0, norm_first: bool = False):
        super().__init__()
        self.self_attn, self.linear1, self.linear2 = self_attn, linear1, linear2
        self.norm1, self.norm2, self.activation, self.norm_first = norm1, norm2, activation, norm_first
        self.dropout, self.dropout1, self.dropout2 = nn.Dropout(dropout), nn.Dropout(dropout), nn.Dropout(dropout)

    @classmethod
    def from_stock(cls, layer: nn.TransformerEncoderLayer) -> ExplicitEncoderLayer | None:
        """The explicit twin of ``layer`` (its modules moved over), or None when its activation is a
        function other than ``F.relu``/``F.gelu`` (the layer is then left as it is)."""
        act = layer.activation
        if not isinstance(act, nn.Module):
            if act not in _ACTIVATIONS:
                return None
            act = _ACTIVATIONS[act]()
        new = cls(ExplicitAttention.from_stock(layer.self_attn), layer.linear1, layer.linear2, layer.norm1,
                  layer.norm2, act, dropout=layer.dropout.p, norm_first=layer.norm_first)
        return new.train(layer.training)

    def _sa(self, x, mask, pad, is_causal):
        return self.dropout1(self.self_attn(x, x, x, attn_mask=mask, key_padding_mask=pad, need_weights=False,
                                            is_causal=is_causal)[0])

    def _ff(self, x):
        return self.dropout2(self.linear2(self.dropout(self.activation(self.linear1(x)))))

    def forward(self, src, src_mask=None, src_key_padding_mask=None, is_causal: bool = False):
        """``src`` ``(B, T, D)`` or ``(T, B, D)`` -> the same shape."""
        x = src
        if self.norm_first:
            x = x + self._sa(self.norm1(x), src_mask, src_key_padding_mask, is_causal)
            return x + self._ff(self.norm2(x))
        x = self.norm1(x + self._sa(x, src_mask, src_key_padding_mask, is_causal))
        return self.norm2(x + self._ff(x))


class ExplicitEncoder(nn.Module):
    """``nn.TransformerEncoder`` as a plain loop over its ``layers`` (then ``norm`` when it has one)."""

    def __init__(self, layers: nn.ModuleList, norm: nn.Module | None = None):
        super().__init__()
        self.layers, self.norm, self.num_layers = layers, norm, len(layers)

    def forward(self, src, mask=None, src_key_padding_mask=None, is_causal: bool | None = None):
        """``src`` through every layer, then ``norm``; the same shape out."""
        for layer in self.layers:
            src = layer(src, src_mask=mask, src_key_padding_mask=src_key_padding_mask, is_causal=bool(is_causal))
        return src if self.norm is None else self.norm(src)


def _is_hf_conv1d(m: nn.Module) -> bool:
    """Hugging Face's ``Conv1D`` (GPT-2): a Linear whose weight is stored transposed, ``(in, out)``."""
    return type(m).__name__ == "Conv1D" and type(m).__module__.startswith("transformers") and m.weight.dim() == 2


def linear_from_conv1d(m: nn.Module) -> nn.Linear:
    """The ``nn.Linear`` equal to a Hugging Face ``Conv1D`` (``y = x @ W + b`` with ``W`` of shape
    ``(in, out)``): the same parameters, the weight transposed."""
    n_in, n_out = m.weight.shape
    new = nn.Linear(n_in, n_out, bias=m.bias is not None, device=m.weight.device, dtype=m.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(m.weight.T)
        if m.bias is not None:
            new.bias.copy_(m.bias)
    return new.train(m.training)


def make_explicit(model: nn.Module) -> tuple[nn.Module, list[str]]:
    """Rewrite, in place, every stock Transformer module of ``model`` into its explicit twin.

    ``nn.MultiheadAttention`` with ``add_bias_kv`` or ``add_zero_attn``, and encoder layers with a custom
    activation function, are left as they are (the methods then keep them whole).

    Returns:
        ``(model, names)``: the model (a new object only when the root itself was rewritten) and the names
        of the rewritten modules (encoders, layers and attentions), in module order.
    """
    done: list[str] = []
    for name, m in [(n, m) for n, m in model.named_modules() if _is_hf_conv1d(m)]:
        model = replace_submodule(model, name, linear_from_conv1d(m))
        done.append(name)
    for kind in (nn.TransformerEncoderLayer, nn.MultiheadAttention, nn.TransformerEncoder):
        for name, m in [(n, m) for n, m in model.named_modules() if type(m) is kind]:
            parent = model.get_submodule(name.rpartition(".")[0]) if name else None
            if kind is nn.TransformerEncoderLayer:
                new = ExplicitEncoderLayer.from_stock(m)
            elif kind is nn.MultiheadAttention:  # a stock layer left in place reads its attention's packed weights
                keep = m.bias_k is not None or m.add_zero_attn or type(parent) is nn.TransformerEncoderLayer
                new = None if keep else ExplicitAttention.from_stock(m)
            else:  # the stock encoder's fast path reads its first layer's stock attributes
                explicit = all(isinstance(layer, ExplicitEncoderLayer) for layer in m.layers)
                new = ExplicitEncoder(m.layers, m.norm).train(m.training) if explicit else None
            if new is not None:
                model = replace_submodule(model, name, new)
                done.append(name)
    order = [n for n, _ in model.named_modules()]
    return model, sorted(done, key=order.index)
