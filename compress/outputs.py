"""The output selector: which tensor of a model's output the methods compress.

Every method trains and measures one output tensor (the logits). Models from libraries rarely return one:
Hugging Face models return a ``ModelOutput`` (``.logits``, ``.hidden_states``, ...), others a dict or a
tuple. ``output=`` names the tensor: a key or attribute name (``"logits"``), an index (``0``), or a
function ``out -> tensor`` (``lambda out: out.logits[:, -1]``).

:func:`select_output` applies it without a wrapper: the model's class is swapped, in place, for a
subclass of the same name whose ``forward`` returns the selected tensor. Module names and state-dict
keys stay exactly the user's (``ignore=``, ``targets=``, ``head=`` take the names the user knows), and
every variant, its saved weights and its exported ONNX graph return the selected tensor.

Example:
    >>> from transformers import BertConfig, BertForSequenceClassification  # doctest: +SKIP
    >>> model = BertForSequenceClassification(BertConfig(num_labels=3))  # doctest: +SKIP
    >>> select_output(model, "logits")(ids).shape  # doctest: +SKIP
    torch.Size([2, 3])
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from slimkit.runtime.errors import ConfigError, UnsupportedModelError

__all__ = ["Output", "check_output", "select_output", "selector_of", "pick", "not_one_tensor", "output_to_json"]

Output = str | int | Callable[[Any], torch.Tensor] | None

_HOW = "a key or attribute name such as 'logits', an index such as 0, or a function out -> tensor"


class _Selected:
    """Marks the subclasses :func:`select_output` derives (their ``forward`` returns the selected tensor)."""

    slimkit_output: Output = None


def _selecting_forward(base: type) -> Callable:
    """``base.forward`` returning the selected tensor, with ``base.forward``'s signature (``__wrapped__``), so
    that exporters bind inputs to its parameters (``input_ids``) rather than to ``*args``."""

    @functools.wraps(base.forward)
    def forward(self, *args, **kwargs):
        return pick(base.forward(self, *args, **kwargs), type(self).slimkit_output, base.__name__)

    return forward


def check_output(output: Any) -> None:
    """Refuse an ``output=`` that is not None, a name, an index or a callable."""
    ok = output is None or callable(output) or (isinstance(output, (str, int)) and not isinstance(output, bool))
    if not ok:
        raise ConfigError(f"output must be None, {_HOW}; got {output!r}")


def selector_of(model: nn.Module) -> Output:
    """The selector :func:`select_output` gave ``model``, or None."""
    return type(model).slimkit_output if isinstance(model, _Selected) else None


def select_output(model: nn.Module, output: Output) -> nn.Module:
    """Make ``model`` (in place) return the tensor ``output`` selects; returns ``model``.

    ``output=None`` leaves the model as it is. A model selected before is re-selected from its own class.

    Raises:
        ConfigError: ``output`` is not a name, an index or a callable.
    """
    check_output(output)
    if output is None:
        return model
    cls = type(model)
    base = next(c for c in cls.__mro__ if not issubclass(c, _Selected)) if isinstance(model, _Selected) else cls
    slot = staticmethod(output) if callable(output) else output
    model.__class__ = type(base.__name__, (_Selected, base),
                           {"slimkit_output": slot, "forward": _selecting_forward(base), "__module__": base.__module__,
                            "__qualname__": base.__qualname__})
    return model


def _tensors(out: Any) -> list:
    """(key or index, value) of every tensor directly inside a mapping or sequence output."""
    items = out.items() if isinstance(out, Mapping) else enumerate(out) if isinstance(out, (tuple, list)) else ()
    return [k for k, v in items if isinstance(v, torch.Tensor)]


def not_one_tensor(name: str, out: Any) -> UnsupportedModelError:
    """The refusal for a model that returns ``out`` (not one tensor) and has no selector: it names the
    selector that would work."""
    keys = _tensors(out)
    what = type(out).__name__
    if keys and isinstance(out, Mapping):
        hint = "logits" if "logits" in keys else keys[0]
        what += f" (tensors: {', '.join(map(repr, keys))})"
    elif keys:
        hint = keys[0]
        what += f" of {len(out)} (tensors at {', '.join(map(str, keys))})"
    else:
        return UnsupportedModelError(f"{name} returns {what}; slimkit compresses one output tensor: pass output= a "
                                     "function out -> tensor that picks it")
    return UnsupportedModelError(f"{name} returns {what}; slimkit compresses one output tensor: pass "
                                 f"output={hint!r} to use that one ({_HOW})")


def pick(out: Any, output: Output, name: str = "the model") -> torch.Tensor:
    """The tensor ``output`` selects in a model's output ``out``.

    Raises:
        UnsupportedModelError: nothing selected (no selector and ``out`` is not a tensor), or the selector
            does not apply to ``out`` or does not give a tensor; the message says what ``out`` holds.
    """
    if output is None:
        if isinstance(out, torch.Tensor):
            return out
        raise not_one_tensor(name, out)
    try:
        if callable(output):
            got = output(out)
        elif isinstance(out, torch.Tensor):
            raise TypeError("the model already returns one tensor")
        elif isinstance(output, str):
            got = out[output] if isinstance(out, Mapping) else getattr(out, output)
        else:
            got = (out.to_tuple() if hasattr(out, "to_tuple") else out)[output]
    except (KeyError, AttributeError, IndexError, TypeError) as e:
        holds = _tensors(out)
        raise UnsupportedModelError(
            f"output={output!r} does not apply to what {name} returns, a {type(out).__name__}"
            + (f" holding tensors at {holds}" if holds else "") + f" ({type(e).__name__}: {e}); pass output= "
            f"{_HOW}" + ("; this model returns one tensor already: pass output=None" if isinstance(out, torch.Tensor)
                         else "")) from e
    if not isinstance(got, torch.Tensor):
        raise UnsupportedModelError(f"output={output!r} selects a {type(got).__name__} from what {name} returns; "
                                    f"it must select one tensor ({_HOW})")
    return got


def output_to_json(output: Output) -> Any:
    """``output`` as JSON: a name or an index as is, a function as ``{"function": "module.qualname"}``
    (which :meth:`slimkit.compress.Family.load` cannot rebuild: the user passes it again)."""
    if callable(output):
        return {"function": f"{getattr(output, '__module__', '?')}.{getattr(output, '__qualname__', repr(output))}"}
    return output
