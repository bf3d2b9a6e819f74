"""to_onnx: graph structure, onnxruntime parity at new shapes, pinned dims, RNNs, atomic failure."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from slimkit.export import to_onnx
from slimkit.export.onnx import check_dynamic_dims
from slimkit.runtime.errors import ConfigError, ExportError


class SeqClassifier(nn.Module):
    """(B, T, 8) -> recurrent layer -> last step -> 3 classes."""

    def __init__(self, rnn=nn.GRU):
        super().__init__()
        self.rnn = rnn(8, 16, batch_first=True)
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        y, _ = self.rnn(x)  # (B, T, 16)
        return self.head(y[:, -1])


class Noisy(nn.Module):
    """Exports fine (RandomNormalLike) but can never match eager PyTorch."""

    def forward(self, x):
        return x + torch.randn_like(x)


class FixedView(nn.Module):
    """Hard-codes the batch in a view, so the batch cannot be dynamic."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, x):
        return self.lin(x.view(2, 4))


def _dims(path, which="input"):
    g = onnx.load(str(path)).graph
    v = (g.input if which == "input" else g.output)[0]
    return [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]


def _ort(path, x):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": x.numpy()})[0]


def test_mlp_exports_one_file_with_dynamic_batch(tmp_path):
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4)).train()
    path = to_onnx(model, torch.randn(1, 16), tmp_path / "m.onnx")
    assert path == tmp_path / "m.onnx" and sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]
    assert model.training  # mode restored
    g = onnx.load(str(path)).graph
    assert [i.name for i in g.input] == ["input"] and [o.name for o in g.output] == ["output"]
    assert {n.op_type for n in g.node} & {"Gemm", "MatMul"} and "Relu" in {n.op_type for n in g.node}
    assert _dims(path) == ["batch", 16] and _dims(path, "output") == ["batch", 4]
    x = torch.randn(7, 16)
    np.testing.assert_allclose(_ort(path, x), model.eval()(x).detach().numpy(), rtol=1e-4, atol=1e-5)


def test_conv_with_dynamic_length(tmp_path):
    model = nn.Sequential(nn.Conv1d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(),
                          nn.Linear(4, 3))
    path = to_onnx(model, torch.randn(1, 1, 40), tmp_path / "c.onnx", dynamic_dims={2: "length"})
    assert _dims(path) == ["batch", 1, "length"]
    x = torch.randn(3, 1, 57)
    np.testing.assert_allclose(_ort(path, x), model(x).detach().numpy(), rtol=1e-4, atol=1e-5)


def test_two_gru_exports_in_one_process_keep_a_dynamic_length(tmp_path):
    from slimkit.compress.cost import count_macs

    for i in range(2):
        torch.manual_seed(i)
        model = SeqClassifier(nn.GRU)
        count_macs(model, torch.randn(1, 5, 8))  # a FlopCounterMode pass before export, as Variant.measure does
        path = to_onnx(model, torch.randn(1, 5, 8), tmp_path / f"g{i}.onnx", dynamic_dims={1: "length"})
        assert _dims(path) == ["batch", "length", 8]
        assert _dims(path, "output") == ["batch", 3]  # not the example's batch of 1
        assert "GRU" in {n.op_type for n in onnx.load(str(path)).graph.node}
        for shape in [(2, 3, 8), (4, 11, 8)]:
            x = torch.randn(*shape)
            np.testing.assert_allclose(_ort(path, x), model(x).detach().numpy(), rtol=1e-4, atol=1e-5)


def test_lstm_after_gru_export(tmp_path):
    model = SeqClassifier(nn.LSTM)
    path = to_onnx(model, torch.randn(1, 5, 8), tmp_path / "l.onnx", dynamic_dims={1: "length"})
    assert _dims(path) == ["batch", "length", 8]


def test_plain_rnn_exports_as_onnx_rnn_with_dynamic_length(tmp_path):
    model = SeqClassifier(nn.RNN)
    path = to_onnx(model, torch.randn(1, 5, 8), tmp_path / "r.onnx", dynamic_dims={1: "length"})
    assert _dims(path) == ["batch", "length", 8]
    assert "RNN" in {n.op_type for n in onnx.load(str(path)).graph.node}
    for shape in [(2, 3, 8), (4, 11, 8)]:
        x = torch.randn(*shape)
        np.testing.assert_allclose(_ort(path, x), model(x).detach().numpy(), rtol=1e-4, atol=1e-5)


def test_pinned_dynamic_dim_is_detected(tmp_path, monkeypatch):
    # the dynamo exporter can silently retry with the "suggested fixes" and pin a dim; simulate that
    real_export = torch.onnx.export

    def pinning_export(*args, **kwargs):
        kwargs["dynamic_shapes"] = None
        return real_export(*args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", pinning_export)
    model = nn.Sequential(nn.Linear(16, 4))
    # a batch-1 example is traced at batch 2 (torch.export would specialise a size-1 dim)
    with pytest.raises(ExportError, match=r"input dim 0 \('batch'\).*pinned it to size 2"):
        to_onnx(model, torch.randn(1, 16), tmp_path / "p.onnx")
    assert list(tmp_path.iterdir()) == []


def test_check_dynamic_dims_on_a_static_file(tmp_path):
    path = to_onnx(nn.Linear(4, 2), torch.randn(3, 4), tmp_path / "s.onnx", dynamic_dims={0: None})
    check_dynamic_dims(onnx.load(str(path)), {})
    with pytest.raises(ExportError, match="pinned it to size 3"):
        check_dynamic_dims(onnx.load(str(path)), {0: "batch"})


def test_parity_mismatch_reports_the_error(tmp_path):
    with pytest.raises(ExportError, match=r"differs from PyTorch at input shape \(3, 4\): max abs error"):
        to_onnx(Noisy(), torch.randn(1, 4), tmp_path / "n.onnx")
    assert list(tmp_path.iterdir()) == []  # no file, no temp file


def test_exporter_failure_becomes_export_error(tmp_path):
    with pytest.raises(ExportError, match=r"(?s)torch.onnx.export failed.*dynamic_dims=\{axis: None\}"):
        to_onnx(FixedView(), torch.randn(2, 4), tmp_path / "f.onnx")
    assert list(tmp_path.iterdir()) == []
    to_onnx(FixedView(), torch.randn(2, 4), tmp_path / "f.onnx", dynamic_dims={0: None})


def test_bad_arguments(tmp_path):
    model = nn.Linear(4, 2)
    with pytest.raises(ConfigError, match="axis 2"):
        to_onnx(model, torch.randn(1, 4), tmp_path / "a.onnx", dynamic_dims={2: "x"})
    with pytest.raises(ConfigError, match="identifier"):
        to_onnx(model, torch.randn(1, 4), tmp_path / "a.onnx", dynamic_dims={1: "a b"})
    with pytest.raises(ConfigError, match="a tensor, a tuple of tensors or a dict"):
        to_onnx(model, np.zeros((1, 4), np.float32), tmp_path / "a.onnx")
    with pytest.raises(ConfigError, match="nn.Module"):
        to_onnx(lambda x: x, torch.randn(1, 4), tmp_path / "a.onnx")


def test_export_does_not_spam_the_log_about_torchvision(tmp_path, capfd):
    to_onnx(nn.Sequential(nn.Linear(4, 3), nn.ReLU()), torch.randn(1, 4), tmp_path / "m.onnx")
    captured = capfd.readouterr()
    assert "torchvision" not in captured.err + captured.out
