"""One contract every method keeps on every architecture of :mod:`archs` (tests/archs.py) (the support matrix).

:func:`run_cell` runs one method on one model: compress -> ``Family`` (variants ordered by cost, each
runs and returns one tensor per sample, sequence models at two lengths) -> ``Family.save`` /
``Family.load`` -> the loaded variants give the same outputs. A cell that cannot apply must be refused up front: :class:`UnsupportedModelError`
before any training (the train loader has handed out at most the batch the example input comes from),
naming the module and the reason. :data:`REFUSED` lists those cells with a phrase of their reason;
``tests/test_support_matrix.py`` runs the table.
"""

from __future__ import annotations

from pathlib import Path

import torch
from archs import MODELS, SEQ, build, inputs, loaders
from torch.utils.data import DataLoader, Dataset

from slimkit.compress import METHODS, Family
from slimkit.runtime.errors import UnsupportedModelError

# the fastest settings that still train, fit or search: a cell is about the contract, not accuracy
FAST = {
    "sortednet": {"widths": (0.5, 1.0), "epochs": 1},
    "n2n": {"iterations": 1, "rollouts": 2, "epochs": 0, "final_epochs": 1, "max_variants": 2},
    "snnk": {"mode": "closed_form", "features": (8, 16), "calibration_batches": 2},
    "sparse_rnn": {"sparsities": (0.5, 0.8), "epochs": 1},
    "boost": {"stages": 2, "units": 4},
}

# (method, model) -> a phrase the refusal must contain (the reason, naming the module where there is one);
# every other cell must pass the whole contract
REFUSED: dict[tuple[str, str], str] = {
    # sparse_rnn prunes recurrent weights: nothing to do without nn.RNN/GRU/LSTM
    **{("sparse_rnn", n): "has no nn.RNN, nn.GRU or nn.LSTM" for n, case in MODELS.items() if not case.recurrent},
    # SNNK replaces Linear -> activation -> Linear chains: CNNs and RNN classifiers have only a Linear head
    **{("snnk", n): "form no such chain" for n in ("resnet", "mobilenet_v2", "dw_se_cnn", "zoo_rescnn",
                                                   "lstm_bi", "gru_2l", "zoo_gru", "zoo_lstm")},
    # GPT-2's classifier head runs on every position; the model picks the last token after it
    ("boost", "gpt2"): "head 'score' receives inputs of shape (2, 8, 32)",
    ("boost", "gpt2_lm"): "head 'lm_head' receives inputs of shape (2, 8, 32)",
}

# cells another branch fixes (issue 17: N2N's students on ViT and ResNet), expected to fail until it lands
PENDING: dict[tuple[str, str], str] = {
    ("n2n", "vit"): "issue 15 defect 5: ZeroDivisionError building the all-removed ViT student",
    ("n2n", "resnet"): "issue 15 defect 6: the removed residual block's stand-in breaks the in-place +=",
}

# cells over a few seconds on 2 cores: run with `make test-slow`
SLOW = {("sortednet", "mobilenet_v2"), ("n2n", "mobilenet_v2")}


class Counting(Dataset):
    """A dataset that counts the items handed out (to tell "refused before training" from "after")."""

    def __init__(self, inner: Dataset):
        self.inner, self.served = inner, 0

    def __len__(self) -> int:
        return len(self.inner)  # type: ignore[arg-type]

    def __getitem__(self, i):
        self.served += 1
        return self.inner[i]


def run_cell(method: str, name: str, tmp: Path) -> Family | None:
    """Run the contract of one cell; returns the family (None for a refused cell)."""
    fn = METHODS[method][0]
    case = MODELS[name]
    train, val = loaders(name)
    counting = Counting(train.dataset)
    train = DataLoader(counting, batch_size=train.batch_size)
    model = build(name)
    kw = dict(train=train, val=val, progress=False, output=case.output, **FAST[method])
    if (method, name) in REFUSED:
        try:
            fn(model, **kw)
        except UnsupportedModelError as e:
            assert REFUSED[(method, name)] in str(e), str(e)
            assert counting.served <= train.batch_size, f"refused after {counting.served} training samples"
            return None
        raise AssertionError(f"{method} on {name} was expected to refuse ({REFUSED[(method, name)]!r})")
    fam = fn(model, **kw)
    assert fam.method == method and len(fam) >= 1
    macs = [v.macs for v in fam]
    assert macs == sorted(macs), macs
    xs = [inputs(name, 3, seed=5)]
    if case.sequence_dim is not None:  # and a sequence length other than the example's
        xs.append(inputs(name, 2, seed=6, length=SEQ + 4))
    outs = {}
    with torch.no_grad():
        for v in fam:
            for x in xs:
                y = v.model(x)
                assert isinstance(y, torch.Tensor) and y.shape == (len(x), case.classes), (v.name, type(y))
                assert torch.isfinite(y).all(), v.name
                outs[v.name, x.shape] = y
    path = fam.save(tmp / f"{method}-{name}")
    loaded = Family.load(path, build(name), output=case.output if callable(case.output) else None)
    assert loaded.names == fam.names
    with torch.no_grad():
        for v in loaded:
            for x in xs:
                torch.testing.assert_close(v.model(x), outs[v.name, x.shape], rtol=1e-5, atol=1e-5)
    return fam
