"""Bundles of sequence models made with defaults serve what the model accepts (issue 15, defects 1 and 8).

* A sparse GRU / LSTM / RNN family bundled with ``export.bundle(fam, dir)`` served only the example's
  length (``InputError: expected [batch, 10, 4], got (5, 17, 4)``).
* A classifier on ``nn.TransformerEncoder(batch_first=False)`` failed to export from its family's batch-1
  example: the exporter baked the batch into the attention's reshape.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from slimkit import export, runtime
from slimkit.compress import Family, Variant, sparse_rnn
from slimkit.runtime.errors import ExportError, InputError

OLD = Path(__file__).parent / "data" / "families_v0"


class Recurrent(nn.Module):
    """(B, T, 4) -> nn.GRU / nn.LSTM / nn.RNN -> last step -> 3 classes."""

    def __init__(self, cell):
        super().__init__()
        self.rnn = cell(4, 8, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        y, _ = self.rnn(x)  # (B, T, 8)
        return self.head(y[:, -1])


class EncoderClassifier(nn.Module):
    """(B, T, 4) -> Linear -> nn.TransformerEncoder(batch_first=False) on (T, B, D) -> mean -> 3 classes."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(4, 16)
        layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=False)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        h = self.embed(x).transpose(0, 1)  # (T, B, D)
        return self.head(self.encoder(h).mean(0))


def _serves_every_length(bundle: Path, fam: Family, lengths=(5, 17), batches=(1, 3)) -> None:
    eng = runtime.load(bundle, threads=1)
    for v in fam:
        for b, t in zip(batches, lengths, strict=True):
            x = torch.randn(b, t, 4)
            with torch.no_grad():
                want = v.model(x).numpy()
            np.testing.assert_allclose(eng.run(x.numpy(), variant=v.name), want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cell", [nn.GRU, nn.LSTM, nn.RNN])
def test_a_sparse_recurrent_family_bundled_with_defaults_serves_every_length(cell, tmp_path):
    torch.manual_seed(0)
    x, y = torch.randn(32, 10, 4), torch.randint(0, 3, (32,))
    train = DataLoader(TensorDataset(x, y), batch_size=16)
    fam = sparse_rnn(Recurrent(cell), train=train, sparsities=(0.5,), epochs=1, progress=False)
    assert fam.dynamic_dims == {0: "batch", 1: "sequence"}
    path = export.bundle(fam, tmp_path / "b")  # defaults only
    spec = runtime.read_manifest(path).inputs[0]
    assert (spec.shape, spec.dim_names, spec.example_shape) == ((None, None, 4), ("batch", "sequence", None),
                                                                (2, 10, 4))
    _serves_every_length(path, fam)


def test_a_family_saved_before_axes_were_recorded_serves_every_length(tmp_path):
    fam = Family.load(OLD / "sparse_rnn")  # a sparse GRU family saved at batch 1, length 10
    _serves_every_length(export.bundle(fam, tmp_path / "b"), fam)


def test_dynamic_dims_still_overrides_the_found_axes(tmp_path):
    fam = Family.load(OLD / "sparse_rnn")
    path = export.bundle(fam, tmp_path / "b", dynamic_dims={1: None})  # the sequence fixed at 10
    assert runtime.read_manifest(path).inputs[0].shape == (None, 10, 4)
    eng = runtime.load(path, threads=1)
    eng.run(np.zeros((3, 10, 4), np.float32))
    with pytest.raises(InputError, match=r"expected float32 of shape \[batch, 10, 4\], got float32 of shape \(5, 17, 4\)"):
        eng.run(np.zeros((5, 17, 4), np.float32))


def _encoder_family() -> tuple[Family, torch.Tensor]:
    torch.manual_seed(0)
    model = EncoderClassifier().eval()
    one = torch.randn(1, 8, 4)  # what families used to keep: batch 1
    return Family([Variant.measure("full", model, one)], method="test", example_input=one), one


def test_a_seq_first_transformer_encoder_exports_from_a_batch_1_example(tmp_path):
    fam, one = _encoder_family()
    _serves_every_length(export.bundle(fam, one, tmp_path / "b"), fam, lengths=(5, 12), batches=(1, 4))


def test_the_export_checks_catch_a_batch_baked_into_the_graph(tmp_path, monkeypatch):
    """Traced at batch 1 (what the exporter did before), the graph fixes the batch in the attention's
    reshape; the parity check at two other shapes must refuse it, leaving no file."""
    fam, one = _encoder_family()
    monkeypatch.setattr("slimkit.export.onnx.trace_inputs", lambda inputs, dims: dict(inputs))
    with pytest.raises(ExportError, match=r"onnxruntime failed on input shape \(2, 10, 4\)"):
        export.to_onnx(fam.largest.model, one, tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []
