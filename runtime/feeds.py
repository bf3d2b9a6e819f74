"""What a caller sends to a bundle, checked against the manifest's inputs, and inputs to time a model with.

A bundle's model takes one input or several (``input_ids`` and ``attention_mask``), each a
:class:`~slimkit.runtime.manifest.TensorSpec`: name, dtype, shape with ``None`` for dynamic dims, and
``dim_names`` naming them (``"batch"``, ``"sequence"``). Dims with the same name in several inputs are one
dim: a request's ``input_ids`` and ``attention_mask`` must agree on batch and sequence. The batch axis is
the one named ``"batch"`` (axis 0 when none is named).

Example:
    >>> check_feed(manifest.inputs, {"input_ids": ids, "attention_mask": mask})  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .errors import ConfigError, InputError
from .manifest import TensorSpec

__all__ = ["BATCH", "batch_axis", "check_array", "check_feed", "batch_size", "example_feed", "tile"]

BATCH = "batch"


def batch_axis(spec: TensorSpec) -> int:
    """The axis of ``spec`` named ``"batch"`` (0 when none is)."""
    names = spec.dim_names or ()
    return names.index(BATCH) if BATCH in names else 0


def check_array(spec: TensorSpec, x: Any) -> None:
    """Raise :class:`InputError` unless ``x`` is a numpy array of ``spec``'s dtype, rank and fixed dims."""
    where = "" if spec.name == "input" else f" for input {spec.name!r}"
    if not isinstance(x, np.ndarray):
        hint = " (convert a torch tensor with .numpy())" if hasattr(x, "numpy") else ""
        raise InputError(f"expected a numpy.ndarray {spec.describe()}{where}, got {type(x).__name__}{hint}")
    ok_shape = len(x.shape) == len(spec.shape) and all(
        d is None or d == s for d, s in zip(spec.shape, x.shape, strict=False))
    if x.dtype != np.dtype(spec.dtype) or not ok_shape:
        raise InputError(f"expected {spec.describe()}{where}, got {x.dtype} of shape {tuple(x.shape)}"
                         + (f"; cast with x.astype(np.{spec.dtype})" if ok_shape else ""))


def check_feed(specs: Sequence[TensorSpec], feed: Any) -> None:
    """Raise :class:`InputError` unless ``feed`` maps every input name, and only those, to a matching array,
    with the dims that share a name (batch, sequence) of one size across inputs."""
    names = [s.name for s in specs]
    if not isinstance(feed, Mapping):
        raise InputError(f"this bundle takes {len(specs)} inputs {names}: pass a dict {{name: numpy array}}, got "
                         f"{type(feed).__name__}")
    missing = [n for n in names if n not in feed]
    extra = [n for n in feed if n not in names]
    if missing or extra:
        raise InputError(("missing input " + ", ".join(f"{n!r}" for n in missing) if missing else "")
                         + ("; " if missing and extra else "")
                         + ("unknown input " + ", ".join(f"{n!r}" for n in extra) if extra else "")
                         + f"; this bundle takes {', '.join(f'{s.name!r} ({s.describe()})' for s in specs)}")
    sizes: dict[str, tuple[str, int]] = {}
    for s in specs:
        x = feed[s.name]
        check_array(s, x)
        for axis, dim in enumerate(s.dim_names or ()):
            if dim is None:
                continue
            seen = sizes.setdefault(dim, (s.name, int(x.shape[axis])))
            if seen[1] != x.shape[axis]:
                raise InputError(f"input {s.name!r} has {dim} {x.shape[axis]} but {seen[0]!r} has {dim} {seen[1]}; "
                                 f"inputs that share the {dim!r} dim must agree on its size")


def batch_size(specs: Sequence[TensorSpec], x: Any) -> int:
    """The batch size of a request: ``x`` an array (one input) or ``{name: array}``."""
    spec = specs[0]
    first = x.get(spec.name) if isinstance(x, Mapping) else x
    axis = batch_axis(spec)
    return int(first.shape[axis]) if first is not None and first.ndim > axis else 1


def example_feed(specs: Sequence[TensorSpec], example: Any = None) -> dict[str, np.ndarray]:
    """One sample (batch 1) per input to time the model with: from ``example`` (an array, or ``{name:
    array}``), else from the manifest's ``example_shape``: standard normal floats, ones for integers and
    booleans (a valid token id, an attention mask that attends everywhere).

    Raises:
        ConfigError: a dim other than the batch is dynamic and neither ``example`` nor the manifest gives its size.
        InputError: ``example`` does not match the inputs.
    """
    if example is not None:
        feed = example if isinstance(example, Mapping) else {specs[0].name: example}
        check_feed(specs, feed)
        return {s.name: np.take(np.asarray(feed[s.name]), [0], axis=batch_axis(s)) for s in specs}
    rng = np.random.default_rng(0)
    out = {}
    for s in specs:
        shape = list(s.example_shape or s.shape)
        shape[batch_axis(s)] = 1
        if any(d is None for d in shape):
            raise ConfigError(f"the input {s.name!r} {s.describe()} has a dynamic dim besides the batch; pass "
                              "example= (one sample) to measure_latency so it knows the size to time")
        sizes = [int(d) for d in shape if d is not None]  # every dim: None was refused above
        dtype = np.dtype(s.dtype)
        out[s.name] = (rng.standard_normal(sizes).astype(dtype) if np.issubdtype(dtype, np.floating)
                       else np.ones(sizes, dtype=dtype))
    return out


def tile(sample: Mapping[str, np.ndarray], specs: Sequence[TensorSpec], batch: int) -> dict[str, np.ndarray]:
    """``sample`` (batch 1) repeated to ``batch`` along each input's batch axis, contiguous."""
    return {s.name: np.ascontiguousarray(np.repeat(sample[s.name], batch, axis=batch_axis(s))) for s in specs}
