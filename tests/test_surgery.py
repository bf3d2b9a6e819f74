"""Surgery of stock layers that hide their parts (compress/surgery.py): equal outputs, shrinkable, exportable."""

from __future__ import annotations

import copy

import numpy as np
import onnxruntime as ort
import pytest
import torch
from archs import EncoderClassifier
from torch import nn

from slimkit import export
from slimkit.compress import graph
from slimkit.compress.surgery import (
    ExplicitAttention,
    ExplicitEncoder,
    ExplicitEncoderLayer,
    linear_from_conv1d,
    make_explicit,
)


def _encoder(batch_first: bool, norm_first: bool, activation: str, nested: bool = False,
             dropout: float = 0.1) -> nn.TransformerEncoder:
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(32, 4, 64, dropout=dropout, batch_first=batch_first, norm_first=norm_first,
                                       activation=activation)
    return nn.TransformerEncoder(layer, 2, norm=nn.LayerNorm(32), enable_nested_tensor=nested).eval()


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize(("norm_first", "activation"), [(False, "relu"), (True, "gelu")])
def test_explicit_encoder_equals_the_stock_one(batch_first, norm_first, activation):
    stock = _encoder(batch_first, norm_first, activation)
    explicit, names = make_explicit(copy.deepcopy(stock))
    assert names == ["", "layers.0", "layers.1"]
    assert isinstance(explicit, ExplicitEncoder) and isinstance(explicit.layers[0], ExplicitEncoderLayer)
    layer = explicit.layers[0]
    assert isinstance(layer.self_attn, ExplicitAttention) and isinstance(layer.activation, nn.Module)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3, 7, 32, generator=gen)
    x = x if batch_first else x.transpose(0, 1)
    pad = torch.zeros(3, 7, dtype=torch.bool)
    pad[0, 5:] = True
    causal = nn.Transformer.generate_square_subsequent_mask(7)
    calls = [{}, {"src_key_padding_mask": pad}, {"mask": causal, "is_causal": True}, {"mask": causal}]
    with torch.no_grad():  # no_grad: the stock layers take their fused fast path
        for kw in calls:
            torch.testing.assert_close(explicit(x, **kw), stock(x, **kw), rtol=1e-5, atol=1e-5)
    # with gradients (the stock layers' slow path) and without dropout, in training mode too
    stock = _encoder(batch_first, norm_first, activation, dropout=0.0).train()
    explicit, _ = make_explicit(copy.deepcopy(stock))
    torch.testing.assert_close(explicit(x, src_key_padding_mask=pad), stock(x, src_key_padding_mask=pad),
                               rtol=1e-5, atol=1e-5)


def test_nested_tensor_fast_path_differs_only_at_padded_positions():
    stock = _encoder(True, False, "relu", nested=True)
    explicit, _ = make_explicit(copy.deepcopy(stock))
    x = torch.randn(3, 7, 32)
    pad = torch.zeros(3, 7, dtype=torch.bool)
    pad[0, 5:] = True
    with torch.no_grad():
        a, b = explicit(x, src_key_padding_mask=pad), stock(x, src_key_padding_mask=pad)
    torch.testing.assert_close(a[~pad], b[~pad], rtol=1e-5, atol=1e-5)
    assert torch.all(b[pad] == 0)  # the stock nested path writes zeros there; the explicit one computes them


def test_explicit_attention_equals_multihead_attention_with_other_key_and_value_widths():
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(32, 4, kdim=16, vdim=24, batch_first=True).eval()
    explicit = ExplicitAttention.from_stock(mha)
    q, k, v = torch.randn(2, 5, 32), torch.randn(2, 6, 16), torch.randn(2, 6, 24)
    pad = torch.tensor([[False] * 5 + [True], [False] * 6])
    for kw in ({}, {"average_attn_weights": False}, {"key_padding_mask": pad}, {"need_weights": False}):
        out, weights = explicit(q, k, v, **kw)
        ref, ref_w = mha(q, k, v, **kw)
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
        assert (weights is None) == (ref_w is None)
        if ref_w is not None:
            torch.testing.assert_close(weights, ref_w, rtol=1e-5, atol=1e-5)
    unbatched = ExplicitAttention.from_stock(nn.MultiheadAttention(32, 4).eval())
    x = torch.randn(5, 32)  # (T, E): no batch axis
    torch.testing.assert_close(unbatched(x, x, x)[0], unbatched(x, x, x)[0])


def test_forms_the_surgery_cannot_rewrite_are_left_as_they_are():
    odd = nn.Sequential(nn.MultiheadAttention(8, 2, add_bias_kv=True),
                        nn.TransformerEncoderLayer(8, 2, 16, activation=torch.tanh))
    _, names = make_explicit(odd)
    assert names == [] and type(odd[0]) is nn.MultiheadAttention and type(odd[1]) is nn.TransformerEncoderLayer


def test_hf_conv1d_becomes_an_equal_linear():
    transformers = pytest.importorskip("transformers")
    from transformers.pytorch_utils import Conv1D

    torch.manual_seed(0)
    conv = Conv1D(12, 8)
    nn.init.normal_(conv.bias)
    x = torch.randn(2, 5, 8)
    lin = linear_from_conv1d(conv)
    assert isinstance(lin, nn.Linear) and lin.weight.shape == (12, 8)
    torch.testing.assert_close(lin(x), conv(x), rtol=1e-6, atol=1e-6)
    assert transformers is not None


def test_the_explicit_layers_shrink_by_heads_and_feed_forward_width():
    model = EncoderClassifier(False).eval()
    model, _ = make_explicit(model)
    x = torch.randn(2, 8, 4)
    analysis = graph.analyze(model, x)
    kinds = {g.root: (g.kind, g.size) for g in analysis.groups}
    assert kinds["encoder.layers.0.self_attn.v_proj"] == ("heads", 32)
    assert kinds["encoder.layers.0.linear1"] == ("channels", 64)
    keep = {g.root: g.keep(0.5) for g in analysis.groups}
    small, _ = graph.shrink(model, x, analysis, keep=keep)
    attn = small.encoder.layers[0].self_attn
    assert attn.q_proj.out_features == 16 and attn.num_heads == 2 and small.encoder.layers[0].linear1.out_features == 32
    assert small(x).shape == (2, 3)


@pytest.mark.parametrize("batch_first", [True, False])
def test_the_explicit_encoder_exports_with_parity(tmp_path, batch_first):
    torch.manual_seed(0)
    model, _ = make_explicit(EncoderClassifier(batch_first).eval())
    path = export.to_onnx(model, torch.randn(1, 8, 4), tmp_path / "m.onnx")  # parity checked inside
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert sess.get_providers() == ["CPUExecutionProvider"]
    x = torch.randn(5, 8, 4)  # another batch size than the example's
    (got,) = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
    np.testing.assert_allclose(got, model(x).detach().numpy(), rtol=1e-4, atol=1e-5)
