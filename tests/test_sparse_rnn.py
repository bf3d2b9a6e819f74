"""compress.sparse_rnn: masks really used in forward and backward, exact sparsity per scope, the cubic
schedule, structured unit removal equal to the masked model, random-graph masks, ONNX export with the
standard recurrent ops, Family save/load and bundles, and clear errors for bad input."""

from __future__ import annotations

import collections

import networkx as nx
import numpy as np
import onnx
import pytest
import torch
from matrix import Counting
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from slimkit.compress import data, zoo
from slimkit.compress.family import Family
from slimkit.compress.sparse_rnn import SparseRNNConfig, sparse_rnn
from slimkit.compress.sparse_rnn.masks import (
    Masks,
    cubic_schedule,
    magnitude_masks,
    recurrent_weights,
    sparsity_of,
    unit_masks,
)
from slimkit.compress.sparse_rnn.random_graphs import graph_masks, make_graph
from slimkit.compress.sparse_rnn.shrink import find_consumers, shrink_units
from slimkit.runtime.errors import ConfigError, UnsupportedModelError

CELLS = {"rnn_tanh": lambda **kw: nn.RNN(nonlinearity="tanh", **kw), "rnn_relu": lambda **kw: nn.RNN(nonlinearity="relu", **kw),
         "gru": nn.GRU, "lstm": nn.LSTM}


class Seq(nn.Module):
    """Linear -> RNN -> Linear head on the last step; batch_first either way."""

    def __init__(self, cell: str, *, hidden=12, layers=2, bidirectional=True, batch_first=True, in_features=3):
        super().__init__()
        self.batch_first = batch_first
        self.embed = nn.Linear(in_features, 8)
        self.rnn = CELLS[cell](input_size=8, hidden_size=hidden, num_layers=layers, batch_first=batch_first,
                               bidirectional=bidirectional)
        self.head = nn.Linear(hidden * (2 if bidirectional else 1), 5)

    def forward(self, x):  # x: (B, T, F) always; the RNN sees its own layout
        h = self.embed(x)
        out, _ = self.rnn(h if self.batch_first else h.transpose(0, 1))
        last = out[:, -1] if self.batch_first else out[-1]
        return self.head(last)


def manual_rnn(m: nn.RNNBase, x: torch.Tensor) -> torch.Tensor:
    """Reference forward from the module's current parameters, step by step (no flattened weights)."""
    seq = x.transpose(0, 1) if m.batch_first else x  # (T, B, F)
    dirs = 2 if m.bidirectional else 1
    steps = seq.shape[0]
    for layer in range(m.num_layers):
        outs = []
        for d in range(dirs):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            w, r = getattr(m, f"weight_ih{sfx}"), getattr(m, f"weight_hh{sfx}")
            bi, bh = getattr(m, f"bias_ih{sfx}"), getattr(m, f"bias_hh{sfx}")
            h = seq.new_zeros(seq.shape[1], m.hidden_size)
            c = torch.zeros_like(h)
            ys = [None] * steps
            for t in (range(steps) if d == 0 else reversed(range(steps))):
                gi, gh = seq[t] @ w.T + bi, h @ r.T + bh
                if m.mode == "LSTM":
                    i, f, g, o = (gi + gh).chunk(4, 1)
                    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                    h = torch.sigmoid(o) * torch.tanh(c)
                elif m.mode == "GRU":
                    (ir, iz, i_n), (hr, hz, h_n) = gi.chunk(3, 1), gh.chunk(3, 1)
                    rr, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
                    h = (1 - z) * torch.tanh(i_n + rr * h_n) + z * h
                else:
                    h = torch.tanh(gi + gh) if m.mode == "RNN_TANH" else torch.relu(gi + gh)
                ys[t] = h
            outs.append(torch.stack(ys))
        seq = torch.cat(outs, -1)
    return seq.transpose(0, 1) if m.batch_first else seq


@pytest.fixture(scope="module")
def seq_splits():
    return data.mnist1d(num_samples=400, layout="sequence", batch_size=50)


# -- masks are really used ------------------------------------------------------------------------------
@pytest.mark.parametrize("cell", sorted(CELLS))
@pytest.mark.parametrize("batch_first", [True, False])
def test_masked_weights_used_in_forward_and_backward(cell, batch_first):
    torch.manual_seed(0)
    model = Seq(cell, batch_first=batch_first)
    x = torch.randn(4, 7, 3)
    dense_out = model(x).detach()
    weights = recurrent_weights(model)
    masks = Masks(model, [w.name for w in weights])
    masks.set(magnitude_masks(model, weights, 0.6, "global"))
    rnn_in = model.embed(x) if batch_first else model.embed(x).transpose(0, 1)
    got, _ = model.rnn(rnn_in)
    torch.testing.assert_close(got, manual_rnn(model.rnn, rnn_in), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(model(x), dense_out)  # the masks changed what the module computes
    # backward: masked entries get no gradient; after Adam steps they are still exactly zero
    masks.hook()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    for _ in range(3):
        opt.zero_grad()
        h = model.embed(x) if batch_first else model.embed(x).transpose(0, 1)
        model.rnn(h)[0].pow(2).sum().backward()  # every step, so every direction's weights get a gradient
        for w in weights:
            p = model.get_submodule(w.module).get_parameter(w.attr)
            assert p.grad[~masks.masks[w.name]].abs().max() == 0
            assert p.grad[masks.masks[w.name]].abs().sum() > 0
        opt.step()
        masks.apply()
    masks.unhook()
    for w in weights:
        p = model.get_submodule(w.module).get_parameter(w.attr)
        assert (p[~masks.masks[w.name]] == 0).all()
    assert sparsity_of(model, weights) == pytest.approx(0.6, abs=0.01)


def test_masks_stay_zero_without_reapplying():
    """Gradient hooks alone keep pruned weights at zero through AdamW (moments never see a gradient)."""
    torch.manual_seed(1)
    model = Seq("lstm")
    weights = recurrent_weights(model)
    masks = Masks(model, [w.name for w in weights])
    masks.set(magnitude_masks(model, weights, 0.8, "layer"))
    masks.hook()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    for _ in range(5):
        opt.zero_grad()
        model(torch.randn(3, 6, 3)).sum().backward()
        opt.step()
    masks.unhook()
    assert sparsity_of(model, weights) >= 0.8 - 1e-3


# -- scopes and schedules ------------------------------------------------------------------------------
@pytest.mark.parametrize("scope", ["global", "layer", "gate"])
def test_scopes_hit_the_requested_sparsity(scope):
    torch.manual_seed(0)
    model = Seq("gru", hidden=16)
    weights = recurrent_weights(model)
    masks = magnitude_masks(model, weights, 0.75, scope)
    if scope == "global":
        total = sum(m.numel() for m in masks.values())
        assert sum(int((~m).sum()) for m in masks.values()) == round(0.75 * total)
        # global: one threshold, so every kept weight outweighs every pruned one
        params = dict(model.named_parameters())
        kept = torch.cat([params[n].abs()[m] for n, m in masks.items()])
        cut = torch.cat([params[n].abs()[~m] for n, m in masks.items()])
        assert kept.min() >= cut.max()
    for w in weights:
        m = masks[w.name]
        blocks = m.chunk(w.gates, 0) if scope == "gate" else [m] if scope == "layer" else []
        for b in blocks:
            assert (~b).float().mean().item() == pytest.approx(0.75, abs=0.01)


def test_cubic_schedule_and_monotone_masks():
    s = cubic_schedule(0.9, 5)
    assert s[-1] == pytest.approx(0.9) and all(a < b for a, b in zip(s, s[1:], strict=False))
    assert s[0] == pytest.approx(0.9 * (1 - 0.8**3))  # Zhu & Gupta, s_i = 0
    torch.manual_seed(0)
    model = Seq("lstm")
    weights = recurrent_weights(model)
    masks = Masks(model, [w.name for w in weights])
    prev = None
    for level in s:
        with torch.no_grad():  # weights move between steps; pruned ones must stay pruned
            for p in model.parameters():
                p.add_(0.05 * torch.randn_like(p))
        masks.apply()
        masks.set(magnitude_masks(model, weights, level, "gate", current=masks.masks))
        if prev is not None:
            for n in masks.masks:
                assert not (masks.masks[n] & ~prev[n]).any()
        prev = {n: m.clone() for n, m in masks.masks.items()}


@pytest.mark.parametrize("schedule,scope", [("gradual", "global"), ("oneshot", "gate")])
def test_sparse_rnn_end_to_end(seq_splits, tmp_path, schedule, scope):
    torch.manual_seed(0)
    model = zoo.build("gru", hidden_size=16, num_layers=2)
    fam = sparse_rnn(model, train=seq_splits.train, val=seq_splits.val, sparsities=(0.5, 0.9),
                     schedule=schedule, scope=scope, epochs=1, progress=False)
    assert fam.method == "sparse_rnn" and set(fam.names) == {"s0.50", "s0.90"}
    for v in fam:
        s = v.config["shape"]["sparsity"]
        assert v.metrics["sparsity"] == pytest.approx(s, abs=0.01)
        assert sparsity_of(v.model, recurrent_weights(v.model)) == pytest.approx(s, abs=0.01)
        assert v.params == int(v.metrics["nonzero_params"]) < fam.source["params"]
        assert v.metrics["compressed_bytes"] < fam.source["metrics"]["compressed_bytes"]
        assert v.config["recipe"]["schedule"] == schedule and 0 <= v.metrics["accuracy"] <= 1
    assert fam["s0.90"].params < fam["s0.50"].params
    assert model.rnn.weight_hh_l0.count_nonzero() == model.rnn.weight_hh_l0.numel()  # input untouched
    loaded = Family.load(fam.save(tmp_path / "fam"))  # a zoo model: rebuilt without the user's help
    x = torch.randn(3, 40, 1)
    for v in fam:
        torch.testing.assert_close(loaded[v.name].model(x), v.model(x))
        assert loaded[v.name].metrics == v.metrics


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
def test_projected_lstm_unstructured_only(seq_splits):
    class Proj(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn, self.head = nn.LSTM(1, 12, proj_size=4, batch_first=True), nn.Linear(4, 10)

        def forward(self, x):
            return self.head(self.rnn(x)[0][:, -1])

    fam = sparse_rnn(Proj(), train=seq_splits.train, sparsities=(0.6,), scope="gate", epochs=1, progress=False)
    names = {w.attr for w in recurrent_weights(fam["s0.60"].model)}
    assert names == {"weight_ih_l0", "weight_hh_l0", "weight_hr_l0"}
    assert fam["s0.60"].metrics["sparsity"] == pytest.approx(0.6, abs=0.01)
    with pytest.raises(UnsupportedModelError, match="proj_size=4"):
        sparse_rnn(Proj(), train=seq_splits.train, sparsities=(0.5,), structured=True, epochs=0, progress=False)


# -- structured -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("cell", sorted(CELLS))
@pytest.mark.parametrize("bidirectional,batch_first", [(True, True), (False, False)])
def test_structured_shrink_equals_masked_model(cell, bidirectional, batch_first):
    torch.manual_seed(0)
    model = Seq(cell, hidden=10, bidirectional=bidirectional, batch_first=batch_first).eval()
    x = torch.randn(3, 6, 3)
    masks_, kept = unit_masks(model, 0.4)
    Masks(model, list(masks_)).set(masks_)
    consumers = find_consumers(model, kept, x)
    assert list(consumers) == ["head"] and len(consumers["head"]) == 6 * (2 if bidirectional else 1)
    small = shrink_units(model, kept, consumers).eval()
    assert small.rnn.hidden_size == 6 and small.head.in_features == 6 * (2 if bidirectional else 1)
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in model.parameters())
    for xx in (x, torch.randn(5, 11, 3)):
        torch.testing.assert_close(small(xx), model(xx), rtol=1e-5, atol=1e-6)


class TwoRNNs(nn.Module):
    """GRU -> LSTM, head reads the LSTM's final hidden state (h_n), not its output sequence."""

    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(2, 8, batch_first=True, bidirectional=True)
        self.lstm = nn.LSTM(16, 6, num_layers=2, batch_first=True)
        self.head = nn.Linear(6, 3)

    def forward(self, x):
        out, _ = self.gru(x)
        _, (h, _c) = self.lstm(out)
        return self.head(h[-1])


def test_structured_chained_rnns_and_family_round_trip(seq_splits, tmp_path):
    torch.manual_seed(0)
    model = TwoRNNs()
    train = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(40, 9, 2), torch.randint(0, 3, (40,))),
                                        batch_size=10)
    fam = sparse_rnn(model, train=train, val=train, sparsities=(0.5,), structured=True, epochs=1, progress=False)
    v = fam["u0.50"]
    assert v.model.gru.hidden_size == 4 and v.model.lstm.hidden_size == 3
    assert v.model.lstm.input_size == 8 and v.model.head.in_features == 3
    assert v.metrics["units_removed"] == pytest.approx(0.5) and v.params < fam.source["params"]
    assert v.macs < fam.source["macs"]
    loaded = Family.load(fam.save(tmp_path / "fam"), model=TwoRNNs())
    x = torch.randn(4, 9, 2)
    torch.testing.assert_close(loaded["u0.50"].model(x), v.model(x))


def test_structured_refuses_a_normalisation_after_the_rnn():
    class Normed(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn, self.norm, self.head = nn.GRU(2, 8, batch_first=True), nn.LayerNorm(8), nn.Linear(8, 3)

        def forward(self, x):
            return self.head(self.norm(self.rnn(x)[0][:, -1]))

    model = Normed().eval()
    seen = Counting(TensorDataset(torch.randn(32, 5, 2), torch.randint(0, 3, (32,))))
    with pytest.raises(UnsupportedModelError, match="cannot remove hidden units of rnn: .*does not keep zeros"):
        sparse_rnn(model, train=DataLoader(seen, batch_size=8), sparsities=(0.5,), structured=True, epochs=2,
                   progress=False)
    assert seen.served <= 8  # refused before fine-tuning, not after
    masks_, kept = unit_masks(model, 0.5)
    Masks(model, list(masks_)).set(masks_)
    with pytest.raises(UnsupportedModelError, match="does not keep zeros.*structured=False"):
        find_consumers(model, kept, torch.randn(2, 5, 2))


# -- random graphs --------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["watts_strogatz", "barabasi_albert"])
def test_graph_masks_follow_the_graph(kind):
    torch.manual_seed(0)
    model = Seq("lstm", hidden=32, layers=2, bidirectional=True)
    masks, records = graph_masks(model, kind, 0.8, rewire_p=0.1, seed=3)
    # hh of both layers and directions, ih of layer 1 (layer 0's inputs are not graph nodes)
    assert sorted(masks) == sorted(f"rnn.weight_{k}_l{layer}{s}" for layer in (0, 1) for s in ("", "_reverse")
                                   for k in (("hh", "ih") if layer else ("hh",)))
    for r in records:
        m = masks[r["tensor"]]
        block = m[:32, :32]
        assert torch.equal(m, block.repeat(4, m.shape[1] // 32))  # one graph, every gate and direction
        assert torch.equal(block, block.T) and block.diagonal().all()
        assert (int(block.sum()) - 32) // 2 == r["edges"]
        assert 1 - block.float().mean().item() == pytest.approx(0.8, abs=0.03)
        # the reported properties are those of the graph the mask encodes
        g = nx.from_numpy_array((block & ~torch.eye(32, dtype=torch.bool)).numpy().astype(int))
        assert r["clustering"] == pytest.approx(nx.average_clustering(g))
        assert r["avg_degree"] == pytest.approx(2 * g.number_of_edges() / 32)
        if nx.is_connected(g):
            assert r["path_length"] == pytest.approx(nx.average_shortest_path_length(g))


def test_graph_variants_report_properties(seq_splits):
    model = zoo.build("gru", hidden_size=20)
    fam = sparse_rnn(model, train=seq_splits.train, val=seq_splits.val, sparsities=(0.7,), graph="watts_strogatz",
                     epochs=1, progress=False)
    v = fam["s0.70"]
    assert v.config["recipe"]["schedule"] == "oneshot" and len(v.config["info"]["graphs"]) == 1
    for key in ("graph_avg_degree", "graph_clustering", "graph_path_length", "graph_density"):
        assert key in v.metrics
    mask = v.model.rnn.weight_hh_l0 != 0
    assert (int(mask[:20, :20].sum()) - 20) // 2 <= v.config["info"]["graphs"][0]["edges"]  # zeros only where no edge


def test_barabasi_albert_density_limit():
    with pytest.raises(ConfigError, match="Barabasi-Albert graph on 16 nodes reaches density"):
        make_graph("barabasi_albert", 16, 0.9, rewire_p=0.1, seed=0)


# -- export ---------------------------------------------------------------------------------------------
def _ort_parity(path, module):
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for b in (1, 6):
        for t in (13, 40):
            x = torch.randn(b, t, 1)
            got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
            np.testing.assert_allclose(got, module(x).detach().numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_pruned_models_export_with_standard_ops(seq_splits, tmp_path, cell):
    from slimkit.export import to_onnx

    torch.manual_seed(0)
    model = zoo.build(cell, hidden_size=12)
    un = sparse_rnn(model, train=seq_splits.train, sparsities=(0.8,), epochs=0, progress=False)["s0.80"].model
    st = sparse_rnn(model, train=seq_splits.train, sparsities=(0.5,), structured=True, epochs=0,
                    progress=False)["u0.50"].model
    for name, module in (("un", un), ("st", st)):
        path = to_onnx(module, seq_splits.example_input, tmp_path / f"{name}.onnx", dynamic_dims={1: "length"})
        ops = collections.Counter(n.op_type for n in onnx.load(str(path)).graph.node)
        assert ops[cell.upper()] == 1 and "Loop" not in ops
        _ort_parity(path, module.eval())
    w = next(i for i in onnx.load(str(tmp_path / "un.onnx")).graph.initializer if len(i.dims) == 3 and i.dims[2] == 12)
    assert (onnx.numpy_helper.to_array(w) == 0).mean() == pytest.approx(0.8, abs=0.02)  # zeros reach the file


@pytest.mark.parametrize("cell,bidirectional,layers", [("rnn_tanh", False, 1), ("rnn_relu", True, 2)])
def test_pruned_plain_rnn_exports_as_onnx_rnn_with_dynamic_length(tmp_path, cell, bidirectional, layers):
    from slimkit.export import to_onnx

    torch.manual_seed(0)
    model = Seq(cell, layers=layers, bidirectional=bidirectional, in_features=1).eval()
    weights = recurrent_weights(model)
    Masks(model, [w.name for w in weights]).set(magnitude_masks(model, weights, 0.5, "gate"))
    path = to_onnx(model, torch.randn(2, 9, 1), tmp_path / "rnn.onnx", dynamic_dims={1: "length"})
    g = onnx.load(str(path))
    ops = collections.Counter(n.op_type for n in g.graph.node)
    assert ops["RNN"] == layers and "Loop" not in ops  # one standard ONNX RNN node per layer, not unrolled
    act = {n.op_type: n for n in g.graph.node}["RNN"].attribute
    assert [a.strings for a in act if a.name == "activations"][0][0] == (b"Tanh" if cell == "rnn_tanh" else b"Relu")
    _ort_parity(path, model)


def test_bundle_reports_sizes(seq_splits, tmp_path):
    from slimkit import export, runtime

    fam = sparse_rnn(zoo.build("lstm", hidden_size=12), train=seq_splits.train, val=seq_splits.val,
                     sparsities=(0.9,), epochs=0, progress=False)
    path = export.bundle(fam, fam.example_input, tmp_path / "b", dynamic_dims={1: "length"})
    entry = runtime.read_manifest(path).variants[0]
    for key in ("sparsity", "dense_bytes", "sparse_bytes", "compressed_bytes", "nonzero_params", "accuracy"):
        assert key in entry.metrics
    assert entry.metrics["compressed_bytes"] < 0.5 * entry.metrics["dense_bytes"]
    assert entry.metrics["sparse_bytes"] < entry.metrics["dense_bytes"]
    x = torch.randn(3, 40, 1)
    np.testing.assert_allclose(runtime.load(path).run(x.numpy()), fam["s0.90"].model(x).detach().numpy(),
                               rtol=1e-4, atol=1e-5)


# -- bad input ------------------------------------------------------------------------------------------
def test_bad_input(seq_splits):
    model = zoo.build("gru", hidden_size=8)
    kw = {"train": seq_splits.train, "progress": False, "epochs": 0}
    with pytest.raises(UnsupportedModelError, match="has no nn.RNN, nn.GRU or nn.LSTM"):
        sparse_rnn(zoo.build("mlp"), **kw)
    with pytest.raises(UnsupportedModelError, match="GRUCell"):
        sparse_rnn(nn.Sequential(nn.GRUCell(4, 4)), **kw)
    for bad in ((1.0,), (-0.1,), (0.5, 1.2)):
        with pytest.raises(ConfigError, match=r"fractions in \[0, 1\).*got"):
            sparse_rnn(model, sparsities=bad, **kw)
    with pytest.raises(ConfigError, match=r"scope='row' is not one of \('global', 'layer', 'gate'\)"):
        sparse_rnn(model, scope="row", **kw)
    with pytest.raises(ConfigError, match=r"schedule='cubic' is not one of \('gradual', 'oneshot'\)"):
        sparse_rnn(model, schedule="cubic", **kw)
    with pytest.raises(ConfigError, match=r"graph='erdos_renyi' is not one of \('watts_strogatz', 'barabasi_albert'\)"):
        sparse_rnn(model, graph="erdos_renyi", **kw)
    with pytest.raises(ConfigError, match="exclude each other"):
        sparse_rnn(model, graph="watts_strogatz", structured=True, **kw)
    with pytest.raises(ConfigError, match="weights="):
        SparseRNNConfig(weights=("xh",))
    with pytest.raises(ConfigError, match=r"unknown options \['learning_rate'\]; valid ones: .*'lr'"):
        sparse_rnn(model, learning_rate=0.1, **kw)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_masks_hold_under_cudnn(cell):
    """On a GPU the fused cuDNN kernel reads a flattened copy of the weights (the known trap)."""
    torch.manual_seed(0)
    model = Seq(cell).cuda()
    x = torch.randn(4, 7, 3, device="cuda")
    weights = recurrent_weights(model)
    masks = Masks(model, [w.name for w in weights])
    masks.set(magnitude_masks(model, weights, 0.7, "gate"))
    h = model.embed(x)
    torch.testing.assert_close(model.rnn(h)[0], manual_rnn(model.rnn, h), rtol=1e-4, atol=1e-4)
    masks.hook()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    for _ in range(3):
        opt.zero_grad()
        model.rnn(model.embed(x))[0].pow(2).sum().backward()
        opt.step()
        masks.apply()
    masks.unhook()
    assert sparsity_of(model, weights) == pytest.approx(0.7, abs=0.01)
    h = model.embed(x)
    torch.testing.assert_close(model.rnn(h)[0], manual_rnn(model.rnn, h), rtol=1e-4, atol=1e-4)
    fam = sparse_rnn(model, train=torch.utils.data.DataLoader(torch.utils.data.TensorDataset(
        torch.randn(40, 7, 3), torch.randint(0, 5, (40,))), batch_size=10), sparsities=(0.5,), structured=True,
        epochs=1, example_input=x[:2], progress=False)
    assert fam["u0.50"].model.rnn.hidden_size == 6
