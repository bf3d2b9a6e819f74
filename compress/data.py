"""Built-in datasets, generated or loaded offline: MNIST-1D and scikit-learn's bundled tables.

Both entry points return :class:`Splits`: train / val / test ``DataLoader``s yielding
``(inputs, targets)`` plus what a method needs to know about the task (an example input, the number of
outputs, the per-sample input shape). Nothing here touches the network.

MNIST-1D (Greydanus & Kobak, 2020) is generated with the ``mnist1d`` package's ``make_dataset`` and
cached as ``.npz`` under the user cache directory, keyed by a hash of the generation arguments.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import tempfile
import warnings
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from slimkit.runtime.errors import ConfigError

__all__ = ["Splits", "mnist1d", "sklearn_dataset", "cache_dir", "MNIST1D_LAYOUTS", "SKLEARN_DATASETS"]

MNIST1D_LAYOUTS = ("channels", "sequence", "flat")
SKLEARN_DATASETS = {
    "digits": "classification",
    "breast_cancer": "classification",
    "wine": "classification",
    "diabetes": "regression",
}
_CACHE_FORMAT = 1  # bump when the cached arrays change meaning
_SPLIT = (0.8, 0.1, 0.1)


@dataclass
class Splits:
    """Train / val / test loaders of one dataset plus what a model needs to know about it.

    Attributes:
        train: shuffled (seeded generator), drops a last partial batch when there is a full one.
        val: in order, not shuffled.
        test: in order, not shuffled.
        example_input: one training input with a batch dimension of 1, e.g. ``(1, 1, 40)``.
        num_classes: number of model outputs: the classes, or 1 for regression.
        input_shape: shape of one sample without the batch dimension, e.g. ``(1, 40)``.
        task: ``"classification"`` (int64 labels) or ``"regression"`` (float32 targets ``(N, 1)``).
        meta: provenance and statistics (dataset name, generation arguments, standardisation).
    """

    train: DataLoader
    val: DataLoader
    test: DataLoader
    example_input: torch.Tensor
    num_classes: int
    input_shape: tuple[int, ...]
    task: str = "classification"
    meta: dict[str, Any] = field(default_factory=dict)


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    """Where slimkit caches generated data: ``override``, else ``$SLIMKIT_CACHE_DIR``, else the user cache.

    Example:
        >>> cache_dir("/tmp/slimkit-cache")
        PosixPath('/tmp/slimkit-cache')
    """
    if override is not None:
        return Path(override)
    env = os.environ.get("SLIMKIT_CACHE_DIR")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("slimkit"))


# -- MNIST-1D -------------------------------------------------------------------------------------------
def mnist1d(*, num_samples: int = 10_000, seed: int = 0, layout: str = "channels", batch_size: int = 128,
            cache_dir: str | os.PathLike | None = None) -> Splits:
    """MNIST-1D, generated offline and split 80/10/10 into train / val / test.

    Args:
        num_samples: samples to generate (rounded down to a multiple of 10, one tenth per digit).
        seed: seeds the generator of the data and the shuffling of the train loader.
        layout: ``"channels"`` gives inputs ``(N, 1, 40)`` for CNNs, ``"sequence"`` gives ``(N, 40, 1)``
            (batch first) for RNNs and Transformers, ``"flat"`` gives ``(N, 40)`` for MLPs.
        batch_size: batch size of all three loaders.
        cache_dir: where to cache the generated arrays (default: ``$SLIMKIT_CACHE_DIR`` or the user cache).

    Returns:
        Splits with float32 inputs and int64 labels, 10 classes.

    Raises:
        ConfigError: a layout, sample count or batch size slimkit cannot use.

    Example:
        >>> splits = mnist1d(num_samples=1000, layout="flat")
        >>> x, y = next(iter(splits.train))
        >>> x.shape, y.dtype
        (torch.Size([128, 40]), torch.int64)
    """
    if layout not in MNIST1D_LAYOUTS:
        raise ConfigError(f"layout={layout!r} is not one of {MNIST1D_LAYOUTS}; use 'channels' for CNNs, "
                          f"'sequence' for RNNs/Transformers, 'flat' for MLPs")
    if not isinstance(num_samples, int) or num_samples < 100:
        raise ConfigError(f"num_samples={num_samples!r}: pass an int >= 100 so every split holds samples")
    _check_batch_size(batch_size)
    x, y, args = _mnist1d_arrays(num_samples, seed, cache_dir)
    n = len(y)
    n_train, n_val = int(n * _SPLIT[0]), int(n * _SPLIT[1])
    xt = torch.from_numpy(x)  # (N, 40)
    xt = {"channels": xt.unsqueeze(1), "sequence": xt.unsqueeze(2), "flat": xt}[layout]
    yt = torch.from_numpy(y)
    parts = [(xt[:n_train], yt[:n_train]), (xt[n_train:n_train + n_val], yt[n_train:n_train + n_val]),
             (xt[n_train + n_val:], yt[n_train + n_val:])]
    meta = {"name": "mnist1d", "layout": layout, "generation": args}
    return _make_splits(parts, seed=seed, batch_size=batch_size, num_classes=10,
                        task="classification", meta=meta)


def _mnist1d_arrays(num_samples: int, seed: int, cache: str | os.PathLike | None
                    ) -> tuple[np.ndarray, np.ndarray, dict]:
    """Generated ``(x float32 (N, 40), y int64 (N,), args)``, from the cache when it holds them."""
    args = _mnist1d_args(num_samples, seed)
    key = json.dumps({"format": _CACHE_FORMAT, "args": args}, sort_keys=True)
    path = cache_dir(cache) / "mnist1d" / f"mnist1d-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as f:
                x, y = f["x"], f["y"]
            if x.dtype == np.float32 and y.dtype == np.int64 and x.ndim == 2 and y.shape == x.shape[:1]:
                return x, y, args
            raise ValueError(f"unexpected arrays x {x.dtype}{x.shape}, y {y.dtype}{y.shape}")
        except Exception as e:  # noqa: BLE001 - any unreadable cache file is simply rebuilt
            warnings.warn(f"MNIST-1D cache file {path} is unreadable ({e}); regenerating it", stacklevel=3)
    x, y = _generate_mnist1d(args)
    _atomic_savez(path, x=x, y=y)
    return x, y, args


def _mnist1d_args(num_samples: int, seed: int) -> dict:
    try:
        pkg_version = version("mnist1d")
    except PackageNotFoundError:  # pragma: no cover - mnist1d is a dependency
        pkg_version = "unknown"
    # the package's defaults (mnist1d 0.0.2), restated so the cache key does not need the import
    return {"num_samples": num_samples, "seed": seed, "template_len": 12, "padding": [36, 60],
            "scale_coeff": 0.4, "max_translation": 48, "corr_noise_scale": 0.25, "iid_noise_scale": 2e-2,
            "shear_scale": 0.75, "shuffle_seq": False, "final_seq_length": 40, "mnist1d": pkg_version}


def _generate_mnist1d(args: dict) -> tuple[np.ndarray, np.ndarray]:
    from mnist1d.data import get_dataset_args, make_dataset

    gen = get_dataset_args(as_dict=True)
    gen.update({k: v for k, v in args.items() if k in gen})
    gen["train_split"] = 1.0  # we split ourselves
    from mnist1d.utils import ObjectView

    # make_dataset reseeds the global `random` and numpy RNGs: keep the caller's streams intact
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        d = make_dataset(ObjectView(gen))
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    x = np.concatenate([d["x"], d["x_test"]]).astype(np.float32)
    y = np.concatenate([d["y"], d["y_test"]]).astype(np.int64)
    return x, y


def _atomic_savez(path: Path, **arrays: np.ndarray) -> None:
    """Write ``path`` so that readers see the old file or the whole new one, never a torn one."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as e:
        warnings.warn(f"could not cache MNIST-1D under {path.parent} ({e}); set SLIMKIT_CACHE_DIR or "
                      f"cache_dir= to a writable directory to avoid regenerating it", stacklevel=4)


# -- scikit-learn ---------------------------------------------------------------------------------------
def sklearn_dataset(name: str, *, seed: int = 0, batch_size: int = 64, standardize: bool = True) -> Splits:
    """One of scikit-learn's bundled datasets, split 80/10/10 (stratified for classification).

    Features (and, for regression, targets) are standardised with statistics of the train split only;
    the statistics are in ``splits.meta``.

    Args:
        name: ``"digits"``, ``"breast_cancer"``, ``"wine"`` (classification) or ``"diabetes"`` (regression).
        seed: seeds the split and the shuffling of the train loader.
        batch_size: batch size of all three loaders.
        standardize: subtract the train mean and divide by the train standard deviation.

    Returns:
        Splits with float32 inputs ``(N, features)``; int64 labels, or float32 targets ``(N, 1)``.

    Raises:
        ConfigError: an unknown dataset name or a bad batch size.

    Example:
        >>> splits = sklearn_dataset("wine")
        >>> splits.input_shape, splits.num_classes, splits.task
        ((13,), 3, 'classification')
    """
    if name not in SKLEARN_DATASETS:
        raise ConfigError(f"unknown scikit-learn dataset {name!r}; choose one of {sorted(SKLEARN_DATASETS)}")
    _check_batch_size(batch_size)
    import sklearn.datasets
    from sklearn.model_selection import train_test_split

    task = SKLEARN_DATASETS[name]
    bunch = getattr(sklearn.datasets, f"load_{name}")()
    x = np.asarray(bunch.data, dtype=np.float64)
    y = np.asarray(bunch.target)
    idx = np.arange(len(y))
    strat = y if task == "classification" else None
    train_idx, rest = train_test_split(idx, test_size=0.2, random_state=seed, stratify=strat)
    val_idx, test_idx = train_test_split(rest, test_size=0.5, random_state=seed,
                                         stratify=None if strat is None else y[rest])
    meta: dict[str, Any] = {"name": name, "standardized": standardize,
                            "indices": {"train": train_idx.tolist(), "val": val_idx.tolist(),
                                        "test": test_idx.tolist()}}
    if standardize:
        mean, std = x[train_idx].mean(0), x[train_idx].std(0)
        std[std == 0] = 1.0  # constant features (blank digit pixels) stay 0
        x = (x - mean) / std
        meta.update(mean=mean.tolist(), std=std.tolist())
    if task == "classification":
        yt = torch.from_numpy(y.astype(np.int64))
        num_classes = int(y.max()) + 1
    else:
        y = y.astype(np.float64).reshape(-1, 1)
        if standardize:
            t_mean, t_std = float(y[train_idx].mean()), float(y[train_idx].std())
            y = (y - t_mean) / t_std
            meta.update(target_mean=t_mean, target_std=t_std)
        yt = torch.from_numpy(y.astype(np.float32))
        num_classes = 1
    xt = torch.from_numpy(x.astype(np.float32))
    parts = [(xt[i], yt[i]) for i in (torch.from_numpy(train_idx), torch.from_numpy(val_idx),
                                       torch.from_numpy(test_idx))]
    return _make_splits(parts, seed=seed, batch_size=batch_size, num_classes=num_classes, task=task, meta=meta)


# -- shared ---------------------------------------------------------------------------------------------
def _check_batch_size(batch_size: int) -> None:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ConfigError(f"batch_size={batch_size!r}: pass a positive int such as 64")


def _make_splits(parts: list[tuple[torch.Tensor, torch.Tensor]], *, seed: int, batch_size: int,
                 num_classes: int, task: str, meta: dict) -> Splits:
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = parts
    gen = torch.Generator().manual_seed(seed)
    # a lone last sample would break BatchNorm in training; a dropped remainder reshuffles every epoch
    train = DataLoader(TensorDataset(x_tr, y_tr), batch_size=batch_size, shuffle=True, generator=gen,
                       drop_last=len(y_tr) >= batch_size)
    val = DataLoader(TensorDataset(x_va, y_va), batch_size=batch_size, shuffle=False)
    test = DataLoader(TensorDataset(x_te, y_te), batch_size=batch_size, shuffle=False)
    return Splits(train, val, test, example_input=x_tr[:1].clone(), num_classes=num_classes,
                  input_shape=tuple(x_tr.shape[1:]), task=task, meta=meta)
