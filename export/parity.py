"""Parity of an exported ONNX file with eager PyTorch, at input shapes other than the export example's.

:func:`check_parity` runs the model in onnxruntime (the runtime's own backend, so the same session options
as serving) and in PyTorch on fresh random inputs with every dynamic dim changed: two shapes, so two batch
sizes and two sequence lengths, each dim moved differently (a graph that equated batch and sequence would
fail). Inputs respect what the model takes (:func:`slimkit.export.input_dims.shifted_inputs`: token ids
in the example's range, attention masks 0/1 with a 1 in every row). Output shapes must match PyTorch's and
the dims the graph declares.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from slimkit.compress.input_axes import call_model
from slimkit.runtime.errors import ExportError

from .input_dims import GROWTHS, Dims, shifted_inputs

__all__ = ["check_parity", "flat_outputs", "root_message"]


def root_message(e: BaseException, limit: int = 800) -> str:
    """``"Type: message"`` of the innermost cause of ``e``, cut to ``limit`` characters."""
    while e.__cause__ is not None:
        e = e.__cause__
    msg = f"{type(e).__name__}: {str(e).strip()}"
    return msg if len(msg) <= limit else msg[:limit] + " ..."


def flat_outputs(out: object) -> list[torch.Tensor]:
    """A model's output as a list of tensors; ExportError for anything but a tensor or a tuple of tensors."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (tuple, list)) and all(isinstance(t, torch.Tensor) for t in out):
        return list(out)
    hint = ""
    if isinstance(out, Mapping):  # a Hugging Face ModelOutput or a dict
        keys = [k for k, v in out.items() if isinstance(v, torch.Tensor)]
        hint = (f" with {keys}; export the tensor to serve: a model whose forward returns e.g. out.logits "
                "(the compress methods' output=\"logits\" makes their variants return it)")
    raise ExportError(f"the model must return a tensor or a tuple of tensors, got {type(out).__name__}{hint}")


def check_parity(module: nn.Module, inputs: Mapping[str, torch.Tensor], positional: bool, onnx_path: Path,
                 dims: Dims, *, rtol: float, atol: float) -> None:
    """Compare onnxruntime with PyTorch at two input shapes that differ from ``inputs`` in every dynamic dim
    (with nothing dynamic: at the example's shape, with fresh data).

    Raises:
        ExportError: outputs differ beyond ``rtol``/``atol``, in shape, or from the declared dims; or the model
            accepts no two changed shapes.
    """
    from slimkit.runtime.backends import OnnxRuntimeBackend

    backend = OnnxRuntimeBackend(onnx_path, threads=1)
    model_outputs = onnx.load(str(onnx_path), load_external_data=False).graph.output
    declared = [[d.dim_value if d.HasField("dim_value") else None for d in o.type.tensor_type.shape.dim]
                for o in model_outputs]
    gen = torch.Generator().manual_seed(0)
    dynamic = any(dims.values())
    growths = GROWTHS if dynamic else (lambda s: s,)
    want, checked = (2 if dynamic else 1), 0
    for growth in growths:
        probe = shifted_inputs(inputs, dims, growth, gen)
        if probe is None:
            continue
        try:
            with torch.no_grad():
                out = call_model(module, probe, positional)
        except Exception:
            continue  # the model itself rejects this size (e.g. needs even lengths): try another
        _compare(backend, probe, [t.detach().cpu().numpy() for t in flat_outputs(out)], declared, rtol, atol)
        checked += 1
        if checked == want:
            return
    raise ExportError(f"could not find {want} input shapes besides {_shapes(inputs)} that the PyTorch model "
                      f"accepts with dims {_named(dims)} changed, to check parity; if a dim cannot vary, keep it "
                      "fixed with dynamic_dims={axis: None}")


def _shapes(inputs: Mapping[str, torch.Tensor]) -> object:
    shapes = {n: tuple(t.shape) for n, t in inputs.items()}
    return next(iter(shapes.values())) if len(shapes) == 1 else shapes


def _named(dims: Dims) -> object:
    return next(iter(dims.values())) if len(dims) == 1 else dims


def _compare(backend, probe: Mapping[str, torch.Tensor], ref: list[np.ndarray],
             declared: list[list[int | None]], rtol: float, atol: float) -> None:
    shape = _shapes(probe)
    feed = {n: t.detach().cpu().numpy() for n, t in probe.items()}
    try:
        got = backend.run(next(iter(feed.values())) if len(feed) == 1 else feed)
    except Exception as e:
        raise ExportError(f"onnxruntime failed on input shape {shape} (a dim the graph treats as fixed?): "
                          f"{root_message(e)}") from e
    if len(got) != len(ref):
        raise ExportError(f"onnxruntime returns {len(got)} outputs, PyTorch {len(ref)}")
    for i, (r, g, decl) in enumerate(zip(ref, got, declared, strict=False)):
        if r.shape != g.shape:
            raise ExportError(f"output {i} has shape {g.shape} in onnxruntime but {r.shape} in PyTorch "
                              f"at input shape {shape}")
        pinned = [(a, d) for a, (d, s) in enumerate(zip(decl, g.shape, strict=False)) if d is not None and d != s]
        if pinned:
            raise ExportError(f"output {i} declares fixed dims {pinned} (axis, size) but is {g.shape} at "
                              f"input shape {shape}: the exporter pinned a dim that should follow the input")
        ok, err, tol = _within(g, r, rtol, atol) if r.dtype.kind in "fc" else _within(g, r, 0.0, 0.0)
        if not ok:
            raise ExportError(f"onnxruntime output {i} differs from PyTorch at input shape {shape}: max abs "
                              f"error {err:.3g} exceeds {tol:.3g} (atol={atol:g} + rtol={rtol:g} x the output's "
                              "largest magnitude); an op may be exported with different semantics or the model "
                              "is non-deterministic")


def _within(got: np.ndarray, ref: np.ndarray, rtol: float, atol: float) -> tuple[bool, float, float]:
    """``(ok, max abs error, tolerance)``: every element within ``atol + rtol * max|ref|``.

    The tolerance is relative to the output's scale, not to each element: a deep float32 network run by
    another kernel library (ONNX Runtime folds batch norm into convolutions, sums in another order) is off
    by about 1e-5 of its largest logit everywhere, which a per-element ``allclose`` refuses for the logits
    near zero (a MobileNetV2 from N2N: 6e-5 on logits up to 6.5). A wrong graph is off by the output's own
    scale. NaNs must sit at the same places."""
    if not ref.size:
        return True, 0.0, atol
    g, r = got.astype(np.float64), ref.astype(np.float64)
    finite = np.isfinite(r)
    if not np.array_equal(g[~finite], r[~finite], equal_nan=True):  # NaN and inf at the same places
        return False, float("nan"), atol
    diff = np.abs(g[finite] - r[finite])  # NaN where onnxruntime alone gave NaN: max is NaN, never <= tol
    err = float(np.max(diff)) if diff.size else 0.0
    tol = atol + rtol * (float(np.max(np.abs(r[finite]))) if finite.any() else 0.0)
    return err <= tol, err, tol
