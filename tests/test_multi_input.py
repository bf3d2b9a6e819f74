"""Token models with several inputs, end to end: a ``transformers`` BERT (tiny config, random weights) exported
with ``input_ids`` + ``attention_mask``, served through ``Engine.run`` and a real HTTP server, outputs equal
to PyTorch at two batch sizes and two sequence lengths; GPT-2 likewise through the engine."""

from __future__ import annotations

import contextlib
import http.client
import io
import json

import numpy as np
import pytest
import torch
from torch import nn

from slimkit import export, runtime
from slimkit.compress import Family, Variant
from slimkit.runtime.errors import InputError

transformers = pytest.importorskip("transformers")
tritonclient_http = pytest.importorskip("tritonclient.http")

VOCAB, CLASSES = 64, 3
SHAPES = [(2, 5), (3, 11)]  # (batch, sequence): two of each, both unlike the export example's (2, 8)


class Logits(nn.Module):
    """A Hugging Face classifier returning its ``.logits`` tensor (what slimkit serves)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask=None):
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


def _bert() -> nn.Module:
    cfg = transformers.BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=64, max_position_embeddings=32, num_labels=CLASSES)
    return Logits(transformers.BertForSequenceClassification(cfg)).eval()


def _gpt2() -> nn.Module:
    cfg = transformers.GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=32,
                                  num_labels=CLASSES, pad_token_id=0, bos_token_id=VOCAB - 1, eos_token_id=VOCAB - 1)
    return Logits(transformers.GPT2ForSequenceClassification(cfg)).eval()


def _tokens(batch: int, length: int, seed: int) -> dict[str, np.ndarray]:
    """Token ids in the vocabulary (0 is GPT-2's pad) and a mask of 0/1 with the first position attended."""
    rng = np.random.default_rng(seed)
    mask = (rng.random((batch, length)) < 0.8).astype(np.int64)
    mask[:, 0] = 1
    return {"input_ids": rng.integers(1, VOCAB, (batch, length)), "attention_mask": mask}


def _torch(model: nn.Module, feed: dict[str, np.ndarray]) -> np.ndarray:
    with torch.no_grad():
        return model(**{k: torch.from_numpy(v) for k, v in feed.items()}).numpy()


def _bundle(make, path):
    torch.manual_seed(0)
    model = make()
    example = {k: torch.from_numpy(v) for k, v in _tokens(2, 8, seed=0).items()}
    fam = Family([Variant.measure("full", model, example["input_ids"])], method="test",
                 example_input=example["input_ids"])
    return export.bundle(fam, example, path), model


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    """(bundle path, the PyTorch model) of a tiny BERT classifier exported with ids and mask."""
    return _bundle(_bert, tmp_path_factory.mktemp("bert") / "bert")


def test_every_input_is_named_in_the_manifest(bert):
    m = runtime.read_manifest(bert[0])
    assert [(s.name, s.dtype, s.shape, s.dim_names, s.example_shape) for s in m.inputs] == [
        ("input_ids", "int64", (None, None), ("batch", "sequence"), (2, 8)),
        ("attention_mask", "int64", (None, None), ("batch", "sequence"), (2, 8))]
    assert m.outputs[0].shape == (None, CLASSES)


@pytest.mark.parametrize("batch,length", SHAPES)
def test_engine_equals_pytorch_at_two_batches_and_lengths(bert, batch, length):
    path, model = bert
    feed = _tokens(batch, length, seed=batch)
    got = runtime.load(path, threads=1).run(feed)
    np.testing.assert_allclose(got, _torch(model, feed), rtol=1e-4, atol=1e-5)


def test_engine_refuses_a_feed_naming_what_is_wrong(bert):
    eng = runtime.load(bert[0], threads=1)
    feed = _tokens(2, 6, seed=0)
    with pytest.raises(InputError, match=r"takes 2 inputs \['input_ids', 'attention_mask'\]: pass a dict"):
        eng.run(feed["input_ids"])
    with pytest.raises(InputError, match=r"missing input 'attention_mask'; this bundle takes 'input_ids' "
                                         r"\(int64 of shape \[batch, sequence\]\)"):
        eng.run({"input_ids": feed["input_ids"]})
    with pytest.raises(InputError, match="unknown input 'token_type_ids'"):
        eng.run({**feed, "token_type_ids": np.zeros_like(feed["input_ids"])})
    with pytest.raises(InputError, match="'attention_mask' has sequence 5 but 'input_ids' has sequence 6"):
        eng.run({**feed, "attention_mask": feed["attention_mask"][:, :5]})
    with pytest.raises(InputError, match=r"for input 'input_ids', got float32 .*cast with x.astype\(np.int64\)"):
        eng.run({**feed, "input_ids": feed["input_ids"].astype(np.float32)})
    timed = eng.measure_latency(batches=(1, 2), repeats=3, warmup=1)  # tiles every input along its batch
    assert set(timed["full"]) == {1, 2}


def test_inspect_names_every_input(bert):
    from slimkit.export.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["inspect", str(bert[0])]) == 0
    assert "input  input_ids: int64 of shape [batch, sequence]" in out.getvalue()
    assert "input  attention_mask: int64 of shape [batch, sequence]" in out.getvalue()


# -- HTTP: KServe v2 requests with several named inputs -------------------------------------------------------
def _post(port: int, body: bytes, headers: dict | None = None) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", "/v2/models/bert/infer", body, headers or {})
        r = conn.getresponse()
        return r.status, json.loads(r.read())
    finally:
        conn.close()


def _json(feed: dict[str, np.ndarray]) -> bytes:
    return json.dumps({"inputs": [{"name": k, "shape": list(v.shape), "datatype": "INT64", "data": v.ravel().tolist()}
                                  for k, v in feed.items()]}).encode()


def test_http_serves_several_named_inputs_and_refuses_missing_or_extra_ones(bert):
    pytest.importorskip("uvicorn")
    from slimkit.runtime.server import serve

    path, model = bert
    with serve(path, port=0, block=False, log_level="warning") as srv:
        client = tritonclient_http.InferenceServerClient(f"127.0.0.1:{srv.port}")
        try:
            assert [i["name"] for i in client.get_model_metadata("bert")["inputs"]] == ["input_ids", "attention_mask"]
            for batch, length in SHAPES:
                feed = _tokens(batch, length, seed=10 + batch)
                want = _torch(model, feed)
                status, resp = _post(srv.port, _json(dict(reversed(feed.items()))))  # any order, by name
                assert status == 200, resp
                np.testing.assert_allclose(np.array(resp["outputs"][0]["data"]).reshape(batch, CLASSES), want,
                                           rtol=1e-4, atol=1e-5)
                inputs = []
                for k, v in feed.items():  # binary tensors, in request order
                    inputs.append(tritonclient_http.InferInput(k, list(v.shape), "INT64"))
                    inputs[-1].set_data_from_numpy(v, binary_data=True)
                np.testing.assert_allclose(client.infer("bert", inputs).as_numpy("output"), want, rtol=1e-4, atol=1e-5)
        finally:
            client.close()
        feed = _tokens(2, 6, seed=0)
        status, resp = _post(srv.port, _json({"input_ids": feed["input_ids"]}))
        assert status == 400 and "missing input 'attention_mask'" in resp["error"], resp
        status, resp = _post(srv.port, _json({**feed, "token_type_ids": feed["input_ids"]}))
        assert status == 400 and "unknown input 'token_type_ids'" in resp["error"], resp
        status, resp = _post(srv.port, _json({**feed, "attention_mask": feed["attention_mask"][:, :4]}))
        assert status == 400 and "'attention_mask' has sequence 4 but 'input_ids' has sequence 6" in resp["error"]
        status, resp = _post(srv.port, _json(feed))  # and it keeps serving
        assert status == 200 and resp["parameters"]["variant"] == "full"


def test_gpt2_with_ids_and_mask_equals_pytorch(tmp_path):
    path, model = _bundle(_gpt2, tmp_path / "gpt2")
    eng = runtime.load(path, threads=1)
    for batch, length in SHAPES:
        feed = _tokens(batch, length, seed=batch)
        np.testing.assert_allclose(eng.run(feed), _torch(model, feed), rtol=1e-4, atol=1e-5)


# -- the pieces, without a model -----------------------------------------------------------------------------
def test_decoding_several_inputs_json_and_binary():
    from slimkit.runtime.manifest import TensorSpec
    from slimkit.runtime.protocol import HTTPError, decode_infer_request

    specs = [TensorSpec("input_ids", "int64", (None, None), ("batch", "sequence")),
             TensorSpec("attention_mask", "int64", (None, None), ("batch", "sequence"))]
    ids, mask = np.arange(6).reshape(2, 3), np.ones((2, 3), np.int64)
    header = json.dumps({"inputs": [
        {"name": "attention_mask", "shape": [2, 3], "datatype": "INT64", "parameters": {"binary_data_size": 48}},
        {"name": "input_ids", "shape": [2, 3], "datatype": "INT64", "data": ids.ravel().tolist()}]}).encode()
    req = decode_infer_request(header + mask.tobytes(), len(header), specs)
    assert list(req.x) == ["input_ids", "attention_mask"]  # the model's order
    np.testing.assert_array_equal(req.x["input_ids"], ids)
    np.testing.assert_array_equal(req.x["attention_mask"], mask)
    with pytest.raises(HTTPError, match="declare 48 bytes of binary data .* but 40 bytes follow"):
        decode_infer_request(header + mask.tobytes()[:40], len(header), specs)
    one = {"name": "input_ids", "shape": [2, 3], "datatype": "INT64", "data": ids.ravel().tolist()}
    with pytest.raises(HTTPError, match="input 'input_ids' is sent twice") as e:
        decode_infer_request(json.dumps({"inputs": [one, one]}).encode(), None, specs)
    assert e.value.status == 400


def test_a_single_input_engine_also_takes_a_named_feed(tiny_bundle):
    eng = runtime.load(tiny_bundle, threads=1)
    x = np.random.default_rng(0).standard_normal((3, 16)).astype(np.float32)
    np.testing.assert_array_equal(eng.run({"input": x}), eng.run(x))
    with pytest.raises(InputError, match="unknown input 'x'"):
        eng.run({"x": x})
