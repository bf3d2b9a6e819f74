"""The dynamic dims of an export: which axis of which input may vary, and the inputs to trace and test with.

One rule for ONNX files, ``torch.export`` programs and bundles (:func:`resolve_input_dims`): the axes the
model accepts at other sizes (:func:`slimkit.compress.input_axes.find_dynamic_axes`: the batch always, the
sequence of recurrent, attention and token models), or a ``Family``'s recorded ones, with the user's
``dynamic_dims`` merged over them. ``dynamic_dims`` takes two forms:

* ``{axis: name or None}``: applies to every input that has that axis (``{1: None}`` fixes the sequence
  of ``input_ids`` and ``attention_mask`` alike; ``{1: "length"}`` renames it);
* ``{input name: {axis: name or None}}``: per input.

An axis mapped to ``None`` is fixed at the example's size. Dims with the same name in several inputs are
one dim (a request's ``input_ids`` and ``attention_mask`` share ``batch`` and ``sequence``).

Example:
    >>> resolve_input_dims({"input": torch.zeros(2, 10, 4)}, {1: None},
    ...                    found={"input": {0: "batch", 1: "sequence"}})
    {'input': {0: 'batch'}}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

from slimkit.compress.input_axes import find_dynamic_axes, resize
from slimkit.runtime.errors import ConfigError

__all__ = ["Dims", "export_dims", "resolve_input_dims", "every_axis", "covers_every_axis", "trace_inputs",
           "shifted_inputs", "GROWTHS"]

Dims = dict[str, dict[int, str]]  # input name -> {axis: dim name}, dynamic axes only


def _per_input(dynamic_dims: Mapping, inputs: Mapping[str, torch.Tensor]) -> dict[str, dict[int, str | None]]:
    """``dynamic_dims`` in the per-input form, checked against the inputs' ranks."""
    if not isinstance(dynamic_dims, Mapping):
        raise ConfigError(f"dynamic_dims must be a dict {{axis: name}} or {{input: {{axis: name}}}}, "
                          f"got {dynamic_dims!r}")
    flat = not dynamic_dims or not all(isinstance(k, str) for k in dynamic_dims)
    if flat:
        per: dict[str, Mapping] = {n: dynamic_dims for n in inputs}
    else:
        unknown = [k for k in dynamic_dims if k not in inputs]
        if unknown:
            raise ConfigError(f"dynamic_dims names inputs {unknown}; the model's inputs are {list(inputs)}")
        per = dict(dynamic_dims)
    out: dict[str, dict[int, str | None]] = {}
    for n, mapping in per.items():
        if not isinstance(mapping, Mapping):
            raise ConfigError(f"dynamic_dims[{n!r}] must be a dict {{axis: name}}, got {mapping!r}")
        ndim = inputs[n].dim()
        out[n] = {}
        for axis, name in mapping.items():
            if isinstance(axis, bool) or not isinstance(axis, int):
                raise ConfigError(f"dynamic_dims axis {axis!r} is not an int axis")
            if not -ndim <= axis < ndim:
                if flat and any(-t.dim() <= axis < t.dim() for t in inputs.values()):
                    continue  # {axis: ...} meant for every input that has that axis
                raise ConfigError(f"dynamic_dims axis {axis!r} is not an axis of the {ndim}-d input {n!r}")
            if name is not None and (not isinstance(name, str) or not name.isidentifier()):
                raise ConfigError(f"dynamic_dims name for axis {axis} must be an identifier or None, got {name!r}")
            out[n][axis % ndim] = name
    return out


def covers_every_axis(dynamic_dims: Mapping | None, inputs: Mapping[str, torch.Tensor]) -> bool:
    """True when ``dynamic_dims`` says, for every axis of every input, whether it varies (nothing to find)."""
    if dynamic_dims is None:
        return False
    per = _per_input(dynamic_dims, inputs)
    return all(set(per.get(n, {})) == set(range(t.dim())) for n, t in inputs.items())


def resolve_input_dims(inputs: Mapping[str, torch.Tensor], dynamic_dims: Mapping | None, *,
                       found: Mapping[str, Mapping[int, str]]) -> Dims:
    """The dynamic axes to export: ``found`` (the model's own, see the module doc) with ``dynamic_dims`` merged
    over it; axes mapped to None dropped.

    Raises:
        ConfigError: a bad ``dynamic_dims`` (unknown input, axis out of range, a name that is not an
            identifier, two axes of one input with the same name).
    """
    merged: dict[str, dict[int, str | None]] = {n: dict(found.get(n, {})) for n in inputs}
    if dynamic_dims is not None:
        for n, mapping in _per_input(dynamic_dims, inputs).items():
            merged[n].update(mapping)
    dims: Dims = {}
    for n, mapping in merged.items():
        d = {a: name for a, name in sorted(mapping.items()) if name is not None}
        if len(set(d.values())) != len(d):
            raise ConfigError(f"dynamic_dims names of input {n!r} must be distinct, got {d}")
        dims[n] = d
    return dims


def export_dims(module: nn.Module, inputs: Mapping[str, torch.Tensor], positional: bool,
                dynamic_dims: Mapping | None, *, found: Mapping[str, Mapping[int, str]] | None = None) -> Dims:
    """The dynamic dims of an export: ``found`` (default: found from ``module`` by
    :func:`~slimkit.compress.input_axes.find_dynamic_axes`, unless ``dynamic_dims`` already says for every
    axis) with ``dynamic_dims`` merged over it (:func:`resolve_input_dims`).

    Raises:
        ConfigError: a bad ``dynamic_dims``.
    """
    if found is None:
        found = {} if covers_every_axis(dynamic_dims, inputs) else find_dynamic_axes(
            module, inputs, positional=positional)
    return resolve_input_dims(inputs, dynamic_dims, found=found)


def every_axis(dims: Dims, inputs: Mapping[str, torch.Tensor]) -> dict[str, dict[int, str | None]]:
    """``dims`` as a ``dynamic_dims`` that says for every axis whether it varies (None: fixed), so that
    exporting several variants with it finds nothing again."""
    return {n: {a: dims.get(n, {}).get(a) for a in range(t.dim())} for n, t in inputs.items()}


def _sizes(inputs: Mapping[str, torch.Tensor], dims: Dims) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for n, d in dims.items():
        for axis, name in d.items():
            size = int(inputs[n].shape[axis])
            if sizes.setdefault(name, size) != size:
                raise ConfigError(f"dim {name!r} has size {sizes[name]} in one input but {size} in input {n!r} "
                                  "of the example; inputs that share a dim must agree on its size")
    return sizes


def _with_sizes(inputs: Mapping[str, torch.Tensor], dims: Dims, sizes: Mapping[str, int],
                gen: torch.Generator) -> dict[str, torch.Tensor]:
    out = {}
    for n, t in inputs.items():
        for axis, name in dims.get(n, {}).items():
            t = resize(t, axis, sizes[name], gen)
        out[n] = t
    return out


def trace_inputs(inputs: Mapping[str, torch.Tensor], dims: Dims) -> dict[str, torch.Tensor]:
    """The example to export with: every dynamic dim at least 2 and different from the other dynamic dims.

    ``torch.export`` specialises a dim of size 1 (and may equate dims of equal size), so a batch-1 example
    exported a graph with the batch baked into a reshape (``nn.TransformerEncoder``'s attention). Dims are
    widened with data like the example's own (:func:`slimkit.compress.input_axes.resize`).
    """
    sizes = _sizes(inputs, dims)
    taken: set[int] = set()
    for name, size in sizes.items():
        size = max(size, 2)
        while size in taken:
            size += 1
        sizes[name] = size
        taken.add(size)
    return _with_sizes(inputs, dims, sizes, torch.Generator().manual_seed(0))


GROWTHS: tuple[Callable[[int], int], ...] = (lambda s: s + 1, lambda s: s + 2, lambda s: 2 * s, lambda s: 3 * s,
                                             lambda s: s - 1)


def shifted_inputs(inputs: Mapping[str, torch.Tensor], dims: Dims, growth: Callable[[int], int],
                   gen: torch.Generator) -> dict[str, torch.Tensor] | None:
    """Fresh random inputs with every dynamic dim moved by ``growth`` (the k-th dim name by ``k`` more, so
    that no two dims move alike), or None when that leaves a dim below 1. Values respect the example's:
    floats standard normal, integers (token ids) in the example's range, 0/1 inputs (attention masks) 0/1
    with the first position of every row 1, booleans likewise."""
    sizes = {name: growth(s) + k for k, (name, s) in enumerate(_sizes(inputs, dims).items())}
    if any(s < 1 for s in sizes.values()):
        return None
    out = {}
    for n, t in inputs.items():
        shape = list(t.shape)
        for axis, name in dims.get(n, {}).items():
            shape[axis] = sizes[name]
        out[n] = _random_like(t, shape, gen)
    return out


def _random_like(x: torch.Tensor, shape: list[int], gen: torch.Generator) -> torch.Tensor:
    if x.dtype.is_floating_point:
        return torch.randn(shape, generator=gen, dtype=x.dtype).to(x.device)
    lo, hi = (int(x.min()), int(x.max())) if x.numel() else (0, 0)
    if x.dtype == torch.bool or (lo >= 0 and hi <= 1 and hi > lo):
        t = torch.randint(0, 2, shape, generator=gen)
        if t.dim() >= 1 and shape[-1] > 0:
            t[..., 0] = 1  # a mask attends to at least one position
        return t.to(x.dtype).to(x.device)
    return torch.randint(lo, hi + 1, shape, generator=gen, dtype=x.dtype).to(x.device)
