"""Which axes of a model's inputs may vary: found by running the model, never asked of the user.

A deployed model must accept what it will be sent: any batch size, and for recurrent, attention and token
models any sequence length the model itself accepts. :func:`find_dynamic_axes` finds those axes by
probing: it runs the model with one axis (or one group of equal-sized axes across inputs, like
``input_ids`` and ``attention_mask``) changed in size, and keeps the axes the model accepts at two other
sizes.

* **batch**: the axis whose samples the model treats independently (sample 0's output is the same alone
  as in a batch). Axis 0 for batch-first models (slimkit's convention: loaders yield batch-first
  inputs); axis 1 for a model that takes ``(T, B, F)`` directly (``nn.TransformerEncoder`` or ``nn.GRU``
  with ``batch_first=False`` fed the raw input). Axis 0 when nothing tells otherwise.
* **sequence**: other axes the model accepts at changed sizes, looked for only in models with a
  recurrent layer (``nn.RNNBase``), an attention module (``nn.MultiheadAttention``, or any module whose
  class name says ``Attention``: Hugging Face's, slimkit's zoo's), or integer (token id) inputs. A 1-D CNN
  with global pooling also accepts other lengths, but was trained at one, so its length stays fixed.

Axes are named as ONNX dims: ``"batch"``, ``"sequence"`` (then ``"sequence_2"``, ...). The result maps
input name -> ``{axis: name}``; a ``Family`` keeps its input's mapping (``Family.dynamic_dims``) and
``slimkit.export`` exports and checks exactly those axes as dynamic.

Example:
    >>> gru = zoo.build("gru", in_features=4, hidden_size=8)  # doctest: +SKIP
    >>> find_dynamic_axes(gru, {"input": torch.randn(2, 10, 4)})  # doctest: +SKIP
    {'input': {0: 'batch', 1: 'sequence'}}
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from slimkit.runtime.errors import ConfigError

__all__ = ["BATCH", "SEQUENCE", "SINGLE_INPUT", "named_inputs", "call_model", "find_dynamic_axes", "resize"]

BATCH = "batch"
SEQUENCE = "sequence"
SINGLE_INPUT = "input"  # the name of a model's only input when the example is one tensor

Example = torch.Tensor | Mapping[str, torch.Tensor] | Sequence[torch.Tensor]


def named_inputs(model: nn.Module, example: Example) -> tuple[dict[str, torch.Tensor], bool]:
    """``(inputs by name, positional)`` for an example input.

    One tensor is named ``"input"``; a tuple or list takes the names of ``model.forward``'s parameters in
    order; a dict must use those names (keyword arguments). ``positional`` says how to call the model
    (:func:`call_model`): with the tensors in order (one tensor, tuple) or as keyword arguments (dict).

    Raises:
        ConfigError: not a tensor, tuple or dict of tensors, or names the forward does not take.
    """
    if isinstance(example, torch.Tensor):
        return {SINGLE_INPUT: example}, True
    params = _forward_params(model)
    takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in params)
    names = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    what = f"{type(model).__name__}.forward takes ({', '.join(names)})"
    if isinstance(example, Mapping):
        tensors = dict(example)
        unknown = [k for k in tensors if not isinstance(k, str) or (k not in names and not takes_kwargs)]
        if unknown:
            raise ConfigError(f"example input names {unknown} are not parameters of the model: {what}")
        positional = False
    elif isinstance(example, (tuple, list)):
        positional_names = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        if len(example) > len(positional_names):
            raise ConfigError(f"the example has {len(example)} inputs but {what}")
        tensors = dict(zip(positional_names, example, strict=False))
        positional = True
    else:
        raise ConfigError(f"example_input must be a tensor, a tuple of tensors or a dict of tensors named after "
                          f"the forward's parameters, got {type(example).__name__}")
    if not tensors:
        raise ConfigError(f"the example input is empty; pass at least one tensor ({what})")
    bad = [k for k, t in tensors.items() if not isinstance(t, torch.Tensor)]
    if bad:
        raise ConfigError(f"example inputs {bad} are not tensors; pass torch tensors (optional inputs "
                          "the model should not see are left out)")
    return tensors, positional


def _forward_params(model: nn.Module) -> list[inspect.Parameter]:
    try:
        return list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        return []


def call_model(model: nn.Module, inputs: Mapping[str, torch.Tensor], positional: bool) -> Any:
    """Run ``model`` on named inputs: in order when ``positional``, else as keyword arguments."""
    return model(*inputs.values()) if positional else model(**inputs)


def find_dynamic_axes(model: nn.Module, inputs: Mapping[str, torch.Tensor], *,
                      positional: bool = True) -> dict[str, dict[int, str]]:
    """The axes of each input that may vary, by running ``model`` (in eval mode, no grad) at changed sizes.

    Args:
        model: the model.
        inputs: example inputs by name (see :func:`named_inputs`).
        positional: call the model with the inputs in order (else as keyword arguments).

    Returns:
        ``{input name: {axis: "batch" | "sequence" | "sequence_2" ...}}``.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return _find(model, dict(inputs), positional)
    finally:
        model.train(was_training)


def _find(model: nn.Module, inputs: dict[str, torch.Tensor], positional: bool) -> dict[str, dict[int, str]]:
    gen = torch.Generator().manual_seed(0)
    ref = _outputs(model, inputs, positional)
    dims: dict[str, dict[int, str]] = {n: {} for n in inputs}
    batch_axis = _batch_axis(model, inputs, positional, ref, gen)
    for n, t in inputs.items():
        if t.dim() > batch_axis:
            dims[n][batch_axis] = BATCH
    if ref is None or not _has_sequence(model, inputs):
        return dims
    groups: dict[tuple[int, int], list[str]] = {}  # (axis, size) -> the inputs with that axis
    for n, t in inputs.items():
        for axis in range(t.dim()):
            if axis != batch_axis:
                groups.setdefault((axis, int(t.shape[axis])), []).append(n)
    found = 0
    for (axis, size), names in groups.items():
        trials = [names] + ([[n] for n in names] if len(names) > 1 else [])
        for members in trials:
            if _accepts_sizes(model, inputs, positional, ref, [(n, axis) for n in members], size, gen):
                found += 1
                for n in members:
                    dims[n][axis] = SEQUENCE if found == 1 else f"{SEQUENCE}_{found}"
                break
    return {n: dict(sorted(d.items())) for n, d in dims.items()}


def _has_sequence(model: nn.Module, inputs: Mapping[str, torch.Tensor]) -> bool:
    """A model with recurrent layers, attention or token inputs: its sequence axis may vary."""
    if any(not (t.is_floating_point() or t.is_complex()) for t in inputs.values()):
        return True
    return any(isinstance(m, (nn.RNNBase, nn.MultiheadAttention)) or "attention" in type(m).__name__.lower()
               for m in model.modules())


def _outputs(model: nn.Module, inputs: Mapping[str, torch.Tensor], positional: bool) -> list[torch.Tensor] | None:
    """The model's output tensors, or None when it fails (a size the model does not accept)."""
    try:
        out = call_model(model, inputs, positional)
    except Exception:
        return None
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (tuple, list)) and all(isinstance(t, torch.Tensor) for t in out):
        return list(out)
    if isinstance(out, Mapping):  # a ModelOutput or dict: its tensors
        return [t for t in out.values() if isinstance(t, torch.Tensor)]
    return None


def _batch_axis(model: nn.Module, inputs: dict[str, torch.Tensor], positional: bool,
                ref: list[torch.Tensor] | None, gen: torch.Generator) -> int:
    """0, unless axis 0 is not independent per sample and axis 1 is (a ``(T, B, F)`` model)."""
    if ref is None or _independent(model, inputs, positional, 0, gen):
        return 0
    if all(t.dim() > 1 for t in inputs.values()) and _independent(model, inputs, positional, 1, gen):
        return 1
    return 0


def _independent(model: nn.Module, inputs: dict[str, torch.Tensor], positional: bool, axis: int,
                 gen: torch.Generator) -> bool:
    """Is sample 0 along ``axis`` computed alone the same as within a batch of 3 different samples?"""
    if any(t.dim() <= axis for t in inputs.values()):
        return False
    sizes = {int(t.shape[axis]) for t in inputs.values()}
    if len(sizes) != 1:
        return False
    one = {n: t.narrow(axis, 0, 1) for n, t in inputs.items()}
    three = {n: resize(t, axis, 3, gen) for n, t in one.items()}
    y1, y3 = _outputs(model, one, positional), _outputs(model, three, positional)
    if not y1 or not y3 or len(y1) != len(y3):
        return False
    for a, b in zip(y1, y3, strict=True):
        match = [j for j in range(min(a.dim(), b.dim())) if a.shape[j] == 1 and b.shape[j] == 3]
        if not match or not any(_close(a, b.narrow(j, 0, 1)) for j in match):
            return False
    return True


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.shape != b.shape:
        return False
    if not a.is_floating_point():
        return bool(torch.equal(a, b))
    return bool(torch.allclose(a.float(), b.float(), rtol=1e-3, atol=1e-4))


def _accepts_sizes(model: nn.Module, inputs: dict[str, torch.Tensor], positional: bool,
                   ref: list[torch.Tensor], members: list[tuple[str, int]], size: int, gen: torch.Generator) -> bool:
    """Does the model run at two other sizes of these axes, with outputs of the same structure?"""
    ok = 0
    for new in (size + 1, size + 2, size - 1, size - 2):
        if new < 1:
            continue
        changed = dict(inputs)
        for n, axis in members:
            changed[n] = resize(inputs[n], axis, new, gen)
        out = _outputs(model, changed, positional)
        if out is None or len(out) != len(ref) or any(o.dim() != r.dim() for o, r in zip(out, ref, strict=True)):
            continue
        ok += 1
        if ok == 2:
            return True
    return False


def resize(t: torch.Tensor, axis: int, size: int, gen: torch.Generator) -> torch.Tensor:
    """``t`` cut or extended to ``size`` along ``axis``. New entries look like ``t``'s own: floats drawn
    around its mean and spread, integers drawn in its range (token ids stay in the vocabulary), and a 0/1
    tensor (an attention mask) extended with ones (the new positions are attended)."""
    n = int(t.shape[axis])
    if size <= n:
        return t.narrow(axis, 0, size)
    shape = list(t.shape)
    shape[axis] = size - n
    if t.is_floating_point():
        std = float(t.float().std()) if t.numel() > 1 else 1.0
        extra = (torch.randn(shape, generator=gen) * (std or 1.0) + float(t.float().mean())).to(t.dtype)
    elif t.dtype == torch.bool:
        extra = torch.ones(shape, dtype=torch.bool)
    else:
        lo, hi = (int(t.min()), int(t.max())) if t.numel() else (0, 0)
        extra = (torch.ones(shape, dtype=t.dtype) if lo >= 0 and hi <= 1
                 else torch.randint(lo, hi + 1, shape, generator=gen, dtype=t.dtype))
    return torch.cat([t, extra.to(t.device)], dim=axis)
