"""Which input axes may vary, found by running the model (compress/input_axes.py), and the Family that keeps them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from slimkit.compress import Family, Variant, zoo
from slimkit.compress.input_axes import find_dynamic_axes, named_inputs
from slimkit.runtime.errors import ConfigError

OLD = Path(__file__).parent / "data" / "families_v0"


class Recurrent(nn.Module):
    """(B, T, 4) -> nn.GRU / nn.LSTM / nn.RNN -> last step -> 3 classes."""

    def __init__(self, cell=nn.GRU, batch_first=True):
        super().__init__()
        self.batch_first = batch_first
        self.rnn = cell(4, 8, batch_first=batch_first)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        y, _ = self.rnn(x)  # (B, T, 8), or (T, B, 8)
        return self.head(y[:, -1] if self.batch_first else y[-1])


class SeqFirstEncoder(nn.Module):
    """Takes ``(T, B, 4)`` directly: nn.TransformerEncoder with batch_first=False, batch on axis 1."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(4, 16)
        layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0)
        self.encoder = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        return self.head(self.encoder(self.embed(x)).mean(0))  # (T, B, 16) -> (B, 3)


class TwoInputs(nn.Module):
    """Token ids and an attention mask: a masked mean of embeddings."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(20, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, input_ids, attention_mask):
        m = attention_mask.unsqueeze(-1).float()  # (B, T, 1)
        return self.head((self.embed(input_ids) * m).sum(1) / m.sum(1).clamp(min=1))


def _axes(model, example):
    inputs, positional = named_inputs(model, example)
    return find_dynamic_axes(model.eval(), inputs, positional=positional)


@pytest.mark.parametrize("cell", [nn.GRU, nn.LSTM, nn.RNN])
def test_recurrent_models_vary_batch_and_sequence(cell):
    assert _axes(Recurrent(cell), torch.randn(2, 10, 4)) == {"input": {0: "batch", 1: "sequence"}}


def test_a_model_fed_time_first_has_its_batch_on_axis_1():
    assert _axes(SeqFirstEncoder(), torch.randn(6, 2, 4)) == {"input": {0: "sequence", 1: "batch"}}
    assert _axes(Recurrent(nn.GRU, batch_first=False), torch.randn(6, 2, 4)) == {"input": {0: "sequence", 1: "batch"}}


@pytest.mark.parametrize("name,model,example", [
    ("mlp", lambda: zoo.build("mlp", in_features=16, hidden=[8]), torch.randn(2, 16)),
    # a CNN with global pooling runs at other lengths, but was trained at one: its length stays fixed
    ("cnn", lambda: zoo.build("rescnn", in_channels=1, channels=[8], depths=[1]), torch.randn(2, 1, 40)),
    # attention, but a learned position table of fixed length: the model refuses other lengths
    ("fixed_positions", lambda: zoo.build("transformer", in_features=4, seq_len=8, d_model=16, num_heads=2,
                                          num_layers=1, ffn_dim=16), torch.randn(2, 8, 4)),
])
def test_only_the_batch_varies_where_the_model_fixes_the_rest(name, model, example):
    assert _axes(model(), example) == {"input": {0: "batch"}}


def test_inputs_that_share_a_sequence_vary_together():
    ids, mask = torch.randint(0, 20, (2, 7)), torch.ones(2, 7, dtype=torch.long)
    want = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}}
    assert _axes(TwoInputs(), {"input_ids": ids, "attention_mask": mask}) == want
    assert _axes(TwoInputs(), (ids, mask)) == want  # a tuple takes the forward's parameter names


def test_example_names_must_be_the_forwards_parameters():
    with pytest.raises(ConfigError, match=r"\['ids'\] are not parameters.*input_ids, attention_mask"):
        named_inputs(TwoInputs(), {"ids": torch.zeros(1, 3, dtype=torch.long)})
    with pytest.raises(ConfigError, match="3 inputs"):
        named_inputs(TwoInputs(), (torch.zeros(1), torch.zeros(1), torch.zeros(1)))
    with pytest.raises(ConfigError, match="a tensor, a tuple of tensors or a dict"):
        named_inputs(TwoInputs(), 3)


def test_a_family_keeps_two_rows_and_saves_its_axes(tmp_path):
    model = zoo.build("gru", in_features=4, num_classes=3, hidden_size=8).eval()
    fam = Family([Variant.measure("full", model, torch.randn(5, 10, 4))], method="sparse_rnn",
                 example_input=torch.randn(5, 10, 4), base=model.slimkit_zoo)
    assert fam.example_input.shape == (2, 10, 4)  # batch >= 2: a batch-1 trace can bake the batch in
    assert fam.dynamic_dims == {0: "batch", 1: "sequence"}
    fam.variants[0].config = {"method": "sparse_rnn", "recipe": {}, "shape": {}, "info": {}}
    path = fam.save(tmp_path / "fam")
    saved = json.loads((path / "family.json").read_text())["example_input"]
    assert saved == {"shape": [2, 10, 4], "dtype": "float32", "dynamic_dims": {"0": "batch", "1": "sequence"}}
    # what is saved is what a loaded family reports, without probing again
    saved["dynamic_dims"] = {"0": "batch"}
    meta = json.loads((path / "family.json").read_text())
    meta["example_input"] = saved
    (path / "family.json").write_text(json.dumps(meta))
    assert Family.load(path).dynamic_dims == {0: "batch"}


def test_a_family_saved_before_axes_were_recorded_finds_them():
    assert "dynamic_dims" not in json.loads((OLD / "sparse_rnn" / "family.json").read_text())["example_input"]
    assert Family.load(OLD / "sparse_rnn").dynamic_dims == {0: "batch", 1: "sequence"}
    assert Family.load(OLD / "sortednet").dynamic_dims == {0: "batch"}
