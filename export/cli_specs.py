"""What ``slimkit compress`` / ``slimkit export`` accept for ``--model`` and ``--data``, turned into objects.

``--model``:

* ``MODULE:FACTORY`` (``mypkg.models:build``) or ``FILE.py:FACTORY`` (``./models.py:build``): the
  attribute is an ``nn.Module`` or a callable returning one (called with ``--model-kwargs``); the
  current directory is importable, as with ``python -m``;
* ``zoo:NAME``: a reference model of :mod:`slimkit.compress.zoo` (random weights unless ``--model-weights``).

``--model-weights FILE`` loads a state dict (``.safetensors``, or ``.pt``/``.pth`` read with
``torch.load(weights_only=True)``) into the model, so a trained model can come from a zoo name or a factory
that builds the architecture only.

``--data``:

* ``mnist1d`` or ``mnist1d:LAYOUT`` (``channels`` for CNNs, ``sequence`` for RNNs and Transformers,
  ``flat`` for MLPs): MNIST-1D, generated offline;
* ``sklearn:NAME`` (``digits``, ``breast_cancer``, ``wine``, ``diabetes``): scikit-learn's bundled tables;
* ``MODULE:ATTR`` / ``FILE.py:ATTR``: ``(train, val)`` DataLoaders, or an object with ``.train`` and
  ``.val`` (and optionally ``.example_input``) such as :class:`slimkit.compress.data.Splits`, or a
  callable returning either.

Every mistake raises :class:`~slimkit.runtime.errors.ConfigError` saying what was given and what to do.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slimkit.runtime.errors import ConfigError

__all__ = ["DataSpec", "load_model", "load_data", "parse_mapping", "parse_scalar"]

MODEL_FORMS = "MODULE:FACTORY (e.g. mypkg.models:build), FILE.py:FACTORY or zoo:NAME"
DATA_FORMS = "mnist1d[:LAYOUT], sklearn:NAME, MODULE:LOADERS or FILE.py:LOADERS"


@dataclass
class DataSpec:
    """The loaders ``--data`` named.

    Attributes:
        train: the training DataLoader.
        val: the validation DataLoader.
        example_input: one input batch, when the data says (else the method takes one from ``train``).
        task: ``"classification"`` or ``"regression"`` when the data says, else None.
    """

    train: Any
    val: Any
    example_input: Any = None
    task: str | None = None


def parse_scalar(text: str) -> Any:
    """A command-line value as JSON when it parses (numbers, true/false, null, lists), else the string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_mapping(text: str, *, what: str) -> dict[str, Any]:
    """``key=value,key=value`` (values as :func:`parse_scalar` reads them) or a JSON object."""
    text = text.strip()
    if text.startswith("{"):
        try:
            value = json.loads(text)
        except ValueError as e:
            raise ConfigError(f"{what} {text!r} is not valid JSON ({e}); or write key=value,key=value") from e
        if not isinstance(value, dict):
            raise ConfigError(f"{what} must be a mapping, got {text!r}")
        return value
    out: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{what} {text!r}: write key=value,key=value (e.g. params=0.2), got {part!r}")
        out[key.strip()] = parse_scalar(value.strip())
    return out


def _resolve(spec: str, *, flag: str, forms: str) -> Any:
    """The object ``MODULE:ATTR`` or ``FILE.py:ATTR`` names."""
    where, sep, attr = spec.rpartition(":")
    if not sep or not where or not attr.isidentifier():
        raise ConfigError(f"{flag} {spec!r}: expected {forms}")
    if where.endswith(".py") or os.sep in where or "/" in where:
        path = Path(where)
        if not path.is_file():
            raise ConfigError(f"{flag} {spec!r}: no file {path}; give the path of a .py file, or a module name")
        name = f"slimkit_cli_{path.stem}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise ConfigError(f"{flag} {spec!r}: {path} cannot be imported as Python source")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        try:
            module_spec.loader.exec_module(module)
        except Exception as e:
            del sys.modules[name]
            raise ConfigError(f"{flag} {spec!r}: running {path} failed ({type(e).__name__}: {e}); "
                              "fix that file first") from e
    else:
        if "" not in sys.path and os.getcwd() not in sys.path:  # as `python -m` does: ./mypkg is importable
            sys.path.insert(0, os.getcwd())
        try:
            module = importlib.import_module(where)
        except ModuleNotFoundError as e:
            raise ConfigError(f"{flag} {spec!r}: cannot import {where} ({e}); run from the directory that "
                              "holds it, pip install it, or give FILE.py:NAME") from e
        except Exception as e:
            raise ConfigError(f"{flag} {spec!r}: importing {where} failed ({type(e).__name__}: {e})") from e
    if not hasattr(module, attr):
        public = sorted(n for n in vars(module) if not n.startswith("_") and callable(getattr(module, n)))
        raise ConfigError(f"{flag} {spec!r}: {where} has no attribute {attr!r}; its callables: "
                          f"{', '.join(public) or 'none'}")
    return getattr(module, attr)


def _call(obj: Any, spec: str, flag: str, kwargs: dict[str, Any]) -> Any:
    try:
        return obj(**kwargs)
    except Exception as e:
        raise ConfigError(f"{flag} {spec!r}: calling it{' with ' + str(kwargs) if kwargs else ''} failed "
                          f"({type(e).__name__}: {e})") from e


def load_model(spec: str, *, kwargs: dict[str, Any] | None = None, weights: str | None = None) -> Any:
    """The ``nn.Module`` that ``--model`` names (see the module docstring), with ``--model-weights`` loaded.

    Raises:
        ConfigError: the spec cannot be imported or called, does not give an ``nn.Module``, or the
            weights do not fit it.
    """
    from torch import nn

    kwargs = dict(kwargs or {})
    if spec.startswith("zoo:"):
        from slimkit.compress import zoo

        model = zoo.build(spec[4:], **kwargs)
        if weights is None:
            warnings.warn(f"{spec} has random weights: a zoo model is untrained unless you load trained ones "
                          "with --model-weights FILE (a state dict), so the metrics measure nothing useful",
                          stacklevel=2)
    else:
        obj = _resolve(spec, flag="--model", forms=MODEL_FORMS)
        if isinstance(obj, nn.Module):
            if kwargs:
                raise ConfigError(f"--model {spec!r} is a module instance, so --model-kwargs has nothing to "
                                  "call; point --model at a factory function instead")
            model = obj
        elif callable(obj):
            model = _call(obj, spec, "--model", kwargs)
        else:
            raise ConfigError(f"--model {spec!r} is a {type(obj).__name__}; point it at an nn.Module or a "
                              "function returning one")
        if not isinstance(model, nn.Module):
            raise ConfigError(f"--model {spec!r} returned a {type(model).__name__}, not a torch.nn.Module")
    if weights is not None:
        _load_weights(model, weights)
    return model


def _load_weights(model: Any, weights: str) -> None:
    path = Path(weights)
    if not path.is_file():
        raise ConfigError(f"--model-weights {weights}: no such file; give a state dict saved as .safetensors or .pt")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            import torch

            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ConfigError(f"--model-weights {weights}: cannot read it as a state dict ({type(e).__name__}: {e}); "
                          "save one with safetensors.torch.save_file(model.state_dict(), ...) or "
                          "torch.save(model.state_dict(), ...)") from e
    if not isinstance(state, dict):
        raise ConfigError(f"--model-weights {weights} holds a {type(state).__name__}, not a state dict")
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise ConfigError(f"--model-weights {weights} does not fit the model ({' '.join(first[:2])}); was it saved "
                          "from this architecture (same --model and --model-kwargs)?") from e


def load_data(spec: str) -> DataSpec:
    """The loaders ``--data`` names (see the module docstring).

    Raises:
        ConfigError: an unknown built-in dataset, an import that fails, or an object that is not
            ``(train, val)`` loaders.
    """
    from slimkit.compress import data

    kind, _, arg = spec.partition(":")
    if kind == "mnist1d":
        splits = data.mnist1d(layout=arg or "channels")
    elif kind == "sklearn":
        if not arg:
            raise ConfigError(f"--data sklearn:NAME needs a name, one of {sorted(data.SKLEARN_DATASETS)}")
        splits = data.sklearn_dataset(arg)
    else:
        obj = _resolve(spec, flag="--data", forms=DATA_FORMS)
        if callable(obj) and not hasattr(obj, "train"):
            obj = _call(obj, spec, "--data", {})
        return _as_loaders(obj, spec)
    return DataSpec(splits.train, splits.val, splits.example_input, splits.task)


def _as_loaders(obj: Any, spec: str) -> DataSpec:
    if hasattr(obj, "train") and hasattr(obj, "val"):
        return DataSpec(obj.train, obj.val, getattr(obj, "example_input", None), getattr(obj, "task", None))
    if isinstance(obj, dict) and "train" in obj and "val" in obj:
        return DataSpec(obj["train"], obj["val"], obj.get("example_input"), obj.get("task"))
    if isinstance(obj, (tuple, list)) and len(obj) in (2, 3):
        return DataSpec(obj[0], obj[1])
    raise ConfigError(f"--data {spec!r} gave a {type(obj).__name__}; return (train, val) DataLoaders or an "
                      "object with .train and .val (such as slimkit.compress.data.Splits)")
