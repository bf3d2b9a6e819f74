"""The one preamble every compression method runs before its own work.

:func:`prepare` does what all five entry functions (``sortednet``, ``n2n``, ``snnk``, ``sparse_rnn``,
``boost``) need first, so that each refuses bad input the same way, with the same message, before any
training:

1. ``model`` is an ``nn.Module`` the method applies to (its own check); ``train`` (and ``val`` when given, or when the method needs it) is a
   non-empty ``DataLoader`` of ``(inputs, targets)``;
2. the example input: ``example_input`` when given, else the first two rows of ``train``'s first batch;
3. seeding (:func:`slimkit.compress.train.set_seed`);
4. a deep copy of the model in eval mode (the user's model is never modified), made ready for the methods
   by :func:`adapt`: stock Transformer layers rewritten into explicit modules
   (:func:`slimkit.compress.surgery.make_explicit`) and the output selected (``output=``,
   :func:`slimkit.compress.outputs.select_output`); it must run on the example input and return one tensor;
5. the source's measures: parameters, MACs per sample and, with ``val``, its metrics.

Example:
    >>> from slimkit.compress import data, zoo
    >>> from slimkit.compress.preamble import prepare
    >>> splits = data.sklearn_dataset("wine")
    >>> prep = prepare("sortednet", zoo.MLP(in_features=13, num_classes=3), train=splits.train,
    ...                val=splits.val)
    >>> sorted(prep.source)
    ['macs', 'metrics', 'params']
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from slimkit.runtime.errors import ConfigError

from .config import check_int
from .cost import count_macs, count_params
from .outputs import Output, check_output, pick, select_output
from .surgery import make_explicit
from .train import device_of, evaluate, set_seed

__all__ = ["Prepared", "prepare", "check_loader", "adapt"]


@dataclass
class Prepared:
    """What :func:`prepare` hands a method.

    Attributes:
        model: a deep copy of the user's model in eval mode, on the user's device (the method's to change).
        example_input: a batch-first input on the model's device.
        source: ``{"params", "macs", "metrics"}`` of the user's model (``metrics`` empty without ``val``).
        base: how to rebuild the model without the user (the zoo recipe), or None.
    """

    model: nn.Module
    example_input: torch.Tensor
    source: dict[str, Any]
    base: dict | None


def check_loader(name: str, loader: Any, *, required: bool = True) -> None:
    """Refuse anything but a non-empty ``DataLoader`` (``None`` too, when ``required``)."""
    if loader is None and not required:
        return
    if not isinstance(loader, DataLoader):
        raise ConfigError(f"{name} must be a torch DataLoader of (inputs, targets), got {type(loader).__name__}")
    try:
        empty = len(loader) == 0
    except TypeError:  # an IterableDataset without __len__: look at the first batch
        empty = next(iter(loader), None) is None
    if empty:
        raise ConfigError(f"the {name} loader is empty; pass a loader over a non-empty dataset")


def _first_input(train: DataLoader) -> torch.Tensor:
    batch = next(iter(train))
    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
        raise ConfigError(f"the train loader must yield (inputs, targets) pairs, got a {type(batch).__name__}; "
                          "wrap your dataset so that each item is (input, target)")
    if not isinstance(batch[0], torch.Tensor):
        raise ConfigError(f"the train loader's inputs must be tensors, got {type(batch[0]).__name__}; "
                          "pass example_input= a tensor the model accepts")
    return batch[0][:2]


def adapt(model: nn.Module, *, output: Output = None) -> nn.Module:
    """A deep copy of ``model`` in eval mode, ready for the methods: its stock Transformer layers made
    explicit (:func:`~slimkit.compress.surgery.make_explicit`) and the tensor ``output`` selects returned
    (:func:`~slimkit.compress.outputs.select_output`). Module names the surgery does not touch and
    state-dict keys outside the rewritten attention layers are the user's. ``Family.load`` adapts the base
    model the same way before rebuilding variants (the copy records ``slimkit_adapt``)."""
    work, _ = make_explicit(copy.deepcopy(model).eval())
    work = select_output(work, output)
    work.slimkit_adapt = {"explicit": True}  # type: ignore[assignment]
    return work


def prepare(method: str, model: Any, *, train: Any, val: Any = None, example_input: Any = None,
            seed: int = 0, task: str = "classification", val_required: bool = False,
            applies: Callable[[nn.Module], Any] | None = None, output: Output = None) -> Prepared:
    """Check the inputs of a compression method, take the example input, seed, copy and measure the model.

    Args:
        method: the calling method's name (used in messages).
        model: the user's trained model (not modified).
        train: loader of ``(inputs, targets)``.
        val: loader of ``(inputs, targets)`` for the source's metrics, or None.
        example_input: one input batch; default: the first two rows of ``train``'s first batch.
        seed: seeds Python, NumPy and PyTorch (after the example is taken).
        task: ``"classification"`` or ``"regression"`` (how the source's metrics are computed).
        val_required: the method scores candidates on ``val`` and cannot run without it.
        applies: the method's own check that it can handle this model (raises
            :class:`UnsupportedModelError` naming the reason), run on the user's model right after the type
            checks, before the model is copied or run.
        output: which tensor of the model's output to compress when it returns more than one (a
            ``ModelOutput``, dict or tuple): a key or attribute name (``"logits"``), an index, or a
            function ``out -> tensor`` (see :mod:`slimkit.compress.outputs`).

    Raises:
        ConfigError: a model that is not an ``nn.Module``, a loader that is not a non-empty
            ``DataLoader``, an example input that is not a tensor or that the model does not run on.
        UnsupportedModelError: the model does not return one tensor and ``output`` selects none (the
            message names the selector to pass).
    """
    if not isinstance(model, nn.Module):
        raise ConfigError(f"{method}: model must be a torch.nn.Module, got {type(model).__name__}")
    if applies is not None:
        applies(model)
    check_loader("train", train)
    if val is None and val_required:
        raise ConfigError(f"{method} scores its candidates on a validation split: pass val= a DataLoader of "
                          "(inputs, targets) (never the test set)")
    check_loader("val", val, required=False)
    check_int("seed", seed, 0)
    check_output(output)
    if example_input is None:
        example_input = _first_input(train)
    elif not isinstance(example_input, torch.Tensor):
        raise ConfigError(f"example_input must be a torch.Tensor (one input batch), got "
                          f"{type(example_input).__name__}")
    set_seed(seed)
    work = adapt(model, output=None)
    x = example_input.detach().to(device_of(work))
    try:
        with torch.no_grad():
            out = work(x)
    except Exception as e:
        raise ConfigError(f"the model does not run on example_input of shape {tuple(x.shape)} "
                          f"({type(e).__name__}: {e}); pass an example_input the model accepts") from e
    pick(out, output, type(model).__name__)  # refuses, naming the selector to pass
    work = select_output(work, output)
    source: dict[str, Any] = {"params": count_params(work), "macs": count_macs(work, x), "metrics": {}}
    if val is not None:
        source["metrics"] = evaluate(work, val, task=task)
    return Prepared(work, x, source, getattr(model, "slimkit_zoo", None))
