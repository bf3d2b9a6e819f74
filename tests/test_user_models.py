"""Users' own models (issue 15): the output selector on real Hugging Face models, and each defect found by
trying the methods as a new user would, tested on the model that showed it."""

from __future__ import annotations

import copy
import inspect

import numpy as np
import pytest
import torch
from archs import MODELS, build, inputs, loaders, next_token_logits
from matrix import Counting
from torch import nn
from torch.utils.data import DataLoader

from slimkit import compress, export, runtime
from slimkit.compress import Family, graph, timebox
from slimkit.compress.depgraph import trace
from slimkit.compress.outputs import select_output
from slimkit.compress.snnk.blocks import SNNKBlock
from slimkit.compress.surgery import ExplicitEncoderLayer
from slimkit.compress.timebox import OutOfTime, time_limit
from slimkit.runtime.errors import ConfigError, UnsupportedModelError

pytest.importorskip("transformers")


# -- the output selector ------------------------------------------------------------------------------------
def test_selected_model_keeps_its_class_names_keys_and_signature():
    from transformers import BertForSequenceClassification

    model = build("bert")
    selected = select_output(copy.deepcopy(model), "logits")
    assert isinstance(selected, BertForSequenceClassification)
    assert type(selected).__name__ == "BertForSequenceClassification"
    assert list(selected.state_dict()) == list(model.state_dict())
    assert [n for n, _ in selected.named_modules()] == [n for n, _ in model.named_modules()]
    assert next(iter(inspect.signature(selected.forward).parameters)) == "input_ids"  # exporters bind by name
    x = inputs("bert", 3)
    with torch.no_grad():
        torch.testing.assert_close(selected(x), model(x).logits)
    again = select_output(selected, 0)  # re-selecting starts from the model's own class
    assert type(again).__mro__[1] is not type(selected) and again(x).shape == (3, 3)


def test_without_a_selector_the_refusal_names_the_one_to_pass():
    train, val = loaders("bert")
    with pytest.raises(UnsupportedModelError, match=r"BertForSequenceClassification returns SequenceClassifierOutput "
                                                    r"\(tensors: 'logits'\); .*pass output='logits'"):
        compress.sortednet(build("bert"), train=train, val=val, epochs=0, progress=False)


def test_the_selected_tensor_survives_save_load_and_the_bundle(tmp_path):
    train, val = loaders("distilbert")
    fam = compress.boost(build("distilbert"), train=train, val=val, stages=1, output="logits", progress=False)
    assert fam.output == "logits"
    loaded = Family.load(fam.save(tmp_path / "fam"), build("distilbert"))  # a name is saved: no output= needed
    assert loaded.output == "logits"
    x = inputs("distilbert", 4, seed=3)
    bundle = export.bundle(fam, tmp_path / "bundle")
    engine = runtime.load(bundle)
    for v, w in zip(fam, loaded):
        with torch.no_grad():
            want = v.model(x)
        assert want.shape == (4, 3)
        torch.testing.assert_close(w.model(x), want)
        np.testing.assert_allclose(engine.run(x.numpy(), variant=v.name), want.numpy(), rtol=1e-4, atol=1e-5)


def test_a_function_selector_must_be_passed_again_on_load(tmp_path):
    train, val = loaders("gpt2_lm")
    fam = compress.snnk(build("gpt2_lm"), train=train, val=val, features=(8,), mode="closed_form",
                        calibration_batches=1, output=next_token_logits, progress=False)
    path = fam.save(tmp_path / "lm")
    with pytest.raises(ConfigError, match="made with output=archs.next_token_logits .*pass it again"):
        Family.load(path, build("gpt2_lm"))
    loaded = Family.load(path, build("gpt2_lm"), output=next_token_logits)
    x = inputs("gpt2_lm", 2)
    with torch.no_grad():
        torch.testing.assert_close(loaded.largest.model(x), fam.largest.model(x))


# -- defect 2: SNNK on nn.TransformerEncoderLayer ----------------------------------------------------------
@pytest.mark.parametrize("name", ["encoder_bf", "encoder_sf"])
def test_snnk_replaces_the_feed_forward_blocks_of_a_stock_transformer(name, tmp_path):
    train, val = loaders(name)
    model = build(name)
    fam = compress.snnk(model, train=train, val=val, features=(8,), mode="closed_form", progress=False)
    blocks = [b["name"] for b in fam.largest.config["shape"]["blocks"]]
    assert blocks == ["encoder.layers.0.linear1..encoder.layers.0.linear2",
                      "encoder.layers.1.linear1..encoder.layers.1.linear2"]
    student = fam.largest.model
    assert isinstance(student.encoder.layers[0], ExplicitEncoderLayer)
    assert isinstance(student.encoder.layers[0].linear1, SNNKBlock)
    assert isinstance(model.encoder.layers[0], nn.TransformerEncoderLayer)  # the user's model is untouched
    loaded = Family.load(fam.save(tmp_path / "f"), build(name))  # the surgery is redone on load
    x = inputs(name, 3)
    with torch.no_grad():
        torch.testing.assert_close(loaded.largest.model(x), student(x))


# -- defect 3: SortedNet on BERT, and refusals before training -----------------------------------------------
def test_sortednet_on_bert_extracts_every_width():
    train, val = loaders("bert")
    fam = compress.sortednet(build("bert"), train=train, val=val, widths=(0.5, 1.0), epochs=1, output="logits",
                             progress=False)
    small = fam["w0.50"].model
    assert small.bert.encoder.layer[0].intermediate.dense.out_features == 32
    assert "bert.embeddings.position_ids" not in small.state_dict()  # non-persistent, kept by the module
    assert small(inputs("bert", 2)).shape == (2, 3)


class FixedView(nn.Module):
    """Reshapes with literal sizes: no narrower sub-network of it can run."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(8, 16), nn.Linear(16, 3)

    def forward(self, x):
        h = torch.relu(self.fc1(x)).view(x.shape[0], 4, 4)  # (B, 16) -> (B, 4, 4)
        return self.fc2(h.flatten(1))


def test_a_model_sortednet_cannot_slice_is_refused_before_any_training():
    data = Counting(torch.utils.data.TensorDataset(torch.randn(64, 8), torch.randint(0, 3, (64,))))
    train = DataLoader(data, batch_size=16)
    with pytest.raises(UnsupportedModelError, match="FixedView does not run after shrinking groups"):
        compress.sortednet(FixedView(), train=train, widths=(0.5, 1.0), epochs=3, progress=False)
    assert data.served <= 16  # only the batch the example input comes from


# -- defect 4: GPT-2's Conv1D and packed attention ----------------------------------------------------------
def test_sortednet_on_gpt2_shrinks_its_mlp_and_names_why_attention_stays():
    train, val = loaders("gpt2")
    model = select_output(build("gpt2"), "logits")
    analysis = graph.analyze(compress.preamble.adapt(model), inputs("gpt2", 2))
    frozen = dict(analysis.frozen)
    assert "split into parts" in frozen["transformer.h.0.attn.c_attn"]
    assert {g.root for g in analysis.groups} == {"transformer.h.0.mlp.c_fc", "transformer.h.1.mlp.c_fc"}
    fam = compress.sortednet(build("gpt2"), train=train, val=val, widths=(0.5, 1.0), epochs=1, output="logits",
                             progress=False)
    small = fam["w0.50"].model
    assert isinstance(small.transformer.h[0].mlp.c_fc, nn.Linear) and small.transformer.h[0].mlp.c_fc.out_features == 64


# -- defect 9: the dependency analysis is bounded ------------------------------------------------------------
def test_recurrent_layers_are_not_unrolled_by_the_trace():
    # a GRU on CPU records a cell per step; torch-pruning's shape inference then recursed through all of them
    sizes = []
    for steps in (8, 64):
        model = MODELS["gru_2l"].make().eval()
        traced = trace(model, torch.randn(2, steps, 4))
        sizes.append(len(traced.graph.module2node))
        assert isinstance(model.rnn, nn.GRU)  # the stand-in is gone after the trace
    assert sizes[0] == sizes[1] < 20


class LinearThenGRU(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed, self.rnn, self.head = nn.Linear(4, 8), nn.GRU(8, 16, batch_first=True), nn.Linear(16, 3)

    def forward(self, x):
        out, _ = self.rnn(torch.relu(self.embed(x)))
        return self.head(out[:, -1])


def test_a_layer_feeding_an_rnn_stays_full_and_the_rnn_hidden_units_shrink():
    model, x = LinearThenGRU().eval(), torch.randn(2, 6, 4)
    analysis = graph.analyze(model, x)
    assert dict(analysis.frozen) == {"embed": "coupled to rnn (GRU)"}
    assert [(g.root, g.size, g.members) for g in analysis.groups] == [("rnn", 16, ("rnn", "head"))]
    small, _ = graph.shrink(model, x, analysis, keep={"rnn": 8})
    assert small.rnn.hidden_size == 8 and small.head.in_features == 8 and small.embed.out_features == 8


class GRUThenMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(4, 16, batch_first=True, bidirectional=True)
        self.mlp = nn.Sequential(nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 3))

    def forward(self, x):
        return self.mlp(self.rnn(x)[0].mean(1))


def test_rnn_units_shrink_when_the_layer_reading_them_is_removed():
    # N2N's smallest student removes mlp.0 and shrinks the GRU: mlp.2 then reads the GRU's units
    model, x = GRUThenMLP().eval(), torch.randn(2, 6, 4)
    analysis = graph.analyze(model, x)
    assert analysis.units == ["mlp.0"] and {g.root for g in analysis.groups} == {"rnn", "mlp.0"}
    small, _ = graph.shrink(model, x, analysis, keep={"rnn": 8}, remove=["mlp.0"])
    assert small.rnn.hidden_size == 8 and small.mlp[2].in_features == 16 and small(x).shape == (2, 3)


def test_an_analysis_over_its_time_is_refused_naming_the_model(monkeypatch):
    monkeypatch.setattr(timebox, "ANALYSIS_SECONDS", 0.0)
    with pytest.raises(UnsupportedModelError, match="tracing BertForSequenceClassification .*did not finish within 0 s"):
        graph.analyze(select_output(build("bert"), "logits"), inputs("bert", 2))


def test_time_limit_interrupts_python_that_swallows_exceptions():
    def stubborn():
        while True:
            try:
                sum(range(100))
                (lambda: None)()
            except Exception:  # a library's broad except must not swallow the time limit
                pass

    with pytest.raises(OutOfTime), time_limit(0.05):
        stubborn()
