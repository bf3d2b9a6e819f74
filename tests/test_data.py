"""Built-in datasets: MNIST-1D generation, splits and cache; scikit-learn tables and standardisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from slimkit.compress import data
from slimkit.runtime.errors import ConfigError

N = 1000  # small enough to generate in a fraction of a second


def _rows(t: torch.Tensor) -> set[bytes]:
    return {r.numpy().tobytes() for r in t.reshape(t.shape[0], -1)}


def _cache_files(root) -> list:
    return sorted((root / "mnist1d").glob("*.npz"))


@pytest.mark.parametrize("layout, shape", [("channels", (1, 40)), ("sequence", (40, 1)), ("flat", (40,))])
def test_mnist1d_layouts_shapes_and_dtypes(tmp_path, layout, shape):
    s = data.mnist1d(num_samples=N, layout=layout, batch_size=32, cache_dir=tmp_path)
    assert s.input_shape == shape
    assert s.example_input.shape == (1, *shape)
    assert (s.num_classes, s.task) == (10, "classification")
    x, y = next(iter(s.train))
    assert x.shape == (32, *shape) and x.dtype == torch.float32
    assert y.shape == (32,) and y.dtype == torch.int64
    assert set(torch.cat([b[1] for b in s.test]).tolist()) <= set(range(10))


def test_mnist1d_splits_are_disjoint_and_sized_80_10_10(tmp_path):
    s = data.mnist1d(num_samples=N, layout="flat", cache_dir=tmp_path)
    tr, va, te = (s.train.dataset.tensors[0], s.val.dataset.tensors[0], s.test.dataset.tensors[0])
    assert (len(tr), len(va), len(te)) == (800, 100, 100)
    a, b, c = _rows(tr), _rows(va), _rows(te)
    assert len(a) == 800 and len(b) == 100 and len(c) == 100  # no duplicated signals
    assert not (a & b) and not (a & c) and not (b & c)
    # every digit appears in training, in roughly equal numbers
    counts = torch.bincount(s.train.dataset.tensors[1], minlength=10)
    assert counts.min() > 50


def test_mnist1d_is_deterministic_and_seed_dependent(tmp_path):
    a = data.mnist1d(num_samples=N, seed=1, cache_dir=tmp_path / "a")
    b = data.mnist1d(num_samples=N, seed=1, cache_dir=tmp_path / "b")
    c = data.mnist1d(num_samples=N, seed=2, cache_dir=tmp_path / "a")
    assert torch.equal(a.train.dataset.tensors[0], b.train.dataset.tensors[0])
    assert not torch.equal(a.train.dataset.tensors[0], c.train.dataset.tensors[0])
    # the train loader shuffles with a seeded generator; val and test keep their order
    xa, _ = next(iter(a.train))
    xb, _ = next(iter(b.train))
    assert torch.equal(xa, xb)
    assert not torch.equal(xa, a.train.dataset.tensors[0][: len(xa)])
    xv, _ = next(iter(a.val))
    assert torch.equal(xv, a.val.dataset.tensors[0][: len(xv)])


def test_mnist1d_leaves_global_rngs_alone(tmp_path):
    np.random.seed(123)
    expected = np.random.rand()
    np.random.seed(123)
    data.mnist1d(num_samples=N, cache_dir=tmp_path)  # make_dataset reseeds numpy internally
    assert np.random.rand() == expected


def test_mnist1d_cache_is_hit_on_the_second_call(tmp_path, monkeypatch):
    first = data.mnist1d(num_samples=N, cache_dir=tmp_path)
    files = _cache_files(tmp_path)
    assert len(files) == 1
    assert not list((tmp_path / "mnist1d").glob("*.tmp"))  # the atomic write left nothing behind

    def boom(args):
        raise AssertionError("regenerated although the cache holds the arrays")

    monkeypatch.setattr(data, "_generate_mnist1d", boom)
    second = data.mnist1d(num_samples=N, cache_dir=tmp_path)
    assert torch.equal(first.train.dataset.tensors[0], second.train.dataset.tensors[0])
    with pytest.raises(AssertionError, match="regenerated"):  # other arguments: a different key
        data.mnist1d(num_samples=N, seed=5, cache_dir=tmp_path)


def test_mnist1d_corrupt_cache_file_is_regenerated(tmp_path):
    first = data.mnist1d(num_samples=N, cache_dir=tmp_path)
    (path,) = _cache_files(tmp_path)
    path.write_bytes(b"not a zip file at all")
    with pytest.warns(UserWarning, match="unreadable"):
        again = data.mnist1d(num_samples=N, cache_dir=tmp_path)
    assert torch.equal(first.test.dataset.tensors[0], again.test.dataset.tensors[0])
    with np.load(path) as f:  # rewritten whole
        assert f["x"].shape == (N, 40)


def test_mnist1d_cache_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SLIMKIT_CACHE_DIR", str(tmp_path / "env"))
    assert data.cache_dir() == tmp_path / "env"
    assert data.cache_dir(tmp_path / "explicit") == tmp_path / "explicit"
    data.mnist1d(num_samples=N)
    assert len(_cache_files(tmp_path / "env")) == 1


def test_mnist1d_restated_defaults_match_the_package():
    from mnist1d.data import get_dataset_args

    ours = data._mnist1d_args(5000, 42)
    theirs = get_dataset_args(as_dict=True)
    for k, v in ours.items():
        if k != "mnist1d":
            assert theirs[k] == v, k


@pytest.mark.parametrize("kwargs, match", [
    ({"layout": "nchw"}, "layout"),
    ({"num_samples": 10}, "num_samples"),
    ({"batch_size": 0}, "batch_size"),
])
def test_mnist1d_rejects_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        data.mnist1d(cache_dir=tmp_path, **kwargs)


@pytest.mark.parametrize("name, features, classes, task", [
    ("digits", 64, 10, "classification"),
    ("breast_cancer", 30, 2, "classification"),
    ("wine", 13, 3, "classification"),
    ("diabetes", 10, 1, "regression"),
])
def test_sklearn_dataset_shapes(name, features, classes, task):
    s = data.sklearn_dataset(name, batch_size=16)
    assert (s.input_shape, s.num_classes, s.task) == ((features,), classes, task)
    x, y = next(iter(s.train))
    assert x.shape == (16, features) and x.dtype == torch.float32
    if task == "classification":
        assert y.dtype == torch.int64 and y.shape == (16,)
    else:
        assert y.dtype == torch.float32 and y.shape == (16, 1)
    sizes = [len(s.train.dataset), len(s.val.dataset), len(s.test.dataset)]
    assert abs(sizes[0] / sum(sizes) - 0.8) < 0.01
    assert not (_rows(s.train.dataset.tensors[0]) & _rows(s.test.dataset.tensors[0]))


def test_sklearn_dataset_standardises_with_train_statistics_only():
    import sklearn.datasets

    s = data.sklearn_dataset("wine", seed=3)
    raw = torch.from_numpy(sklearn.datasets.load_wine().data).float()
    tr, va = s.train.dataset.tensors[0], s.val.dataset.tensors[0]
    assert torch.allclose(tr.mean(0), torch.zeros(13), atol=1e-5)
    assert torch.allclose(tr.std(0, unbiased=False), torch.ones(13), atol=1e-4)
    assert va.mean(0).abs().max() > 0.05  # val was not standardised on itself
    # the statistics are those of the raw train rows, and val maps back onto raw rows
    train_raw = raw[s.meta["indices"]["train"]]
    assert torch.allclose(torch.tensor(s.meta["mean"]).float(), train_raw.mean(0), rtol=1e-5)
    back = va * torch.tensor(s.meta["std"]).float() + torch.tensor(s.meta["mean"]).float()
    assert torch.allclose(back, raw[s.meta["indices"]["val"]], rtol=1e-4, atol=1e-3)


def test_sklearn_dataset_without_standardisation_keeps_raw_values():
    import sklearn.datasets

    s = data.sklearn_dataset("diabetes", standardize=False)
    raw = sklearn.datasets.load_diabetes()
    idx = s.meta["indices"]["train"]
    assert torch.allclose(s.train.dataset.tensors[0], torch.from_numpy(raw.data[idx]).float())
    assert torch.allclose(s.train.dataset.tensors[1][:, 0], torch.from_numpy(raw.target[idx]).float())


def test_sklearn_dataset_unknown_name_lists_choices():
    with pytest.raises(ConfigError, match="breast_cancer.*diabetes.*digits.*wine"):
        data.sklearn_dataset("iris")
