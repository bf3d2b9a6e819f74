"""``to_onnx``: export an ``nn.Module`` to one self-contained, validated, parity-checked ONNX file.

Uses the dynamo exporter (``torch.onnx.export(dynamo=True)``) and then refuses to hand back a file it
has not checked:

1. ``onnx.checker.check_model`` passes;
2. every dim asked to be dynamic really is (the exporter can silently pin a dim to the example's size);
3. onnxruntime matches eager PyTorch at two input shapes that differ from the export example, and
   returns output shapes the graph declares.

The file is written to a temp file beside ``path`` and renamed at the end, so a failed export leaves
nothing behind.

Recurrent layers keep a dynamic time dim through :mod:`slimkit.export.onnx_rnn`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from slimkit.runtime.errors import ConfigError, ExportError

from .onnx_rnn import clear_rnn_dispatch_cache, plain_rnn_export, refuse_unrolled_rnn, rnn_hint

__all__ = ["to_onnx", "onnx_specs", "resolve_dynamic_dims", "check_dynamic_dims"]

INPUT_NAME = "input"
OUTPUT_NAME = "output"
DEFAULT_DYNAMIC_DIMS = {0: "batch"}


def to_onnx(module: nn.Module, example_input: torch.Tensor, path: str | os.PathLike, *,
            dynamic_dims: Mapping[int, str | None] | None = None, opset: int | None = None,
            rtol: float = 1e-4, atol: float = 1e-5) -> Path:
    """Export ``module`` to a single ONNX file and verify it against PyTorch with onnxruntime.

    Args:
        module: the model (put in eval mode for the export; its mode is restored afterwards).
        example_input: one input tensor (any batch size) with the model's dtype and shape.
        path: where to write the ``.onnx`` file.
        dynamic_dims: ``{axis: name}`` merged over the default ``{0: "batch"}``; add
            ``{1: "length"}`` for sequence models, or map an axis to ``None`` to keep it fixed
            (``{0: None}`` pins the batch).
        opset: ONNX opset (default: the exporter's, 20 in torch 2.13).
        rtol: relative tolerance of the onnxruntime-vs-PyTorch parity check.
        atol: absolute tolerance of the parity check.

    Returns:
        ``Path(path)``.

    Raises:
        ExportError: the exporter failed, pinned a dynamic dim, or the file disagrees with PyTorch.
        ConfigError: bad arguments.

    Example:
        >>> model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
        >>> to_onnx(model, torch.randn(1, 16), "m.onnx")  # doctest: +SKIP
        PosixPath('m.onnx')
    """
    if not isinstance(module, nn.Module):
        raise ConfigError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    if not isinstance(example_input, torch.Tensor):
        raise ConfigError(f"example_input must be one torch.Tensor, got {type(example_input).__name__}")
    if opset is not None and (isinstance(opset, bool) or not isinstance(opset, int)):
        raise ConfigError(f"opset must be an int or None, got {opset!r}")
    dims = resolve_dynamic_dims(dynamic_dims, example_input.dim())
    refuse_unrolled_rnn(module, dims)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    was_training = module.training
    module.eval()
    try:
        try:
            with torch.no_grad():
                ref = module(example_input)
        except Exception as e:
            raise ExportError(f"the model fails on example_input of shape {tuple(example_input.shape)} "
                              f"({_root_message(e)}); pass an input the model accepts") from e
        n_out = len(_flat(ref))
        out_names = [OUTPUT_NAME] + [f"{OUTPUT_NAME}_{i}" for i in range(1, n_out)]
        prog = _export(module, example_input, dims, out_names, opset)
        prog.save(str(tmp), external_data=False)
        model = onnx.load(str(tmp))
        try:
            onnx.checker.check_model(model)
        except onnx.checker.ValidationError as e:
            raise ExportError(f"the exported ONNX model fails onnx.checker: {e}") from e
        check_dynamic_dims(model, dims)
        if dims and _unpin_outputs(model):
            onnx.save(model, str(tmp))
        _check_parity(module, example_input, tmp, dims, rtol, atol)
        os.replace(tmp, path)
    except ExportError as e:
        hint = rnn_hint(module)
        raise ExportError(f"{type(module).__name__} -> {path.name}: {e}" + (f"; {hint}" if hint else "")) from e
    finally:
        module.train(was_training)
        tmp.unlink(missing_ok=True)
        Path(f"{tmp}.data").unlink(missing_ok=True)
    return path


def onnx_specs(model: onnx.ModelProto) -> tuple[list[dict], list[dict]]:
    """Manifest ``inputs``/``outputs`` specs (name, numpy dtype, shape with None for dynamic dims)."""

    def spec(v: onnx.ValueInfoProto) -> dict:
        t = v.type.tensor_type
        dims = list(t.shape.dim)
        return {"name": v.name,
                "dtype": np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.elem_type)).name,
                "shape": [d.dim_value if d.HasField("dim_value") else None for d in dims],
                "dim_names": [d.dim_param if not d.HasField("dim_value") and d.dim_param else None
                              for d in dims]}

    return [spec(v) for v in model.graph.input], [spec(v) for v in model.graph.output]


def check_dynamic_dims(model: onnx.ModelProto, dims: Mapping[int, str]) -> None:
    """Raise ExportError if an input axis that should be dynamic has a fixed size in ``model``."""
    inp = model.graph.input[0].type.tensor_type.shape.dim
    for axis, name in dims.items():
        d = inp[axis]
        if d.HasField("dim_value") or not d.dim_param:
            raise ExportError(
                f"input dim {axis} ({name!r}) was meant to be dynamic but the exporter pinned it to size "
                f"{d.dim_value}; the model's forward probably fixes it (a reshape/view with a literal "
                f"size, a Python branch on the shape). Make forward shape-agnostic, or keep the dim fixed "
                f"with dynamic_dims={{{axis}: None}}"
            )


# -- internals ------------------------------------------------------------------------------------


def _unpin_outputs(model: onnx.ModelProto) -> bool:
    """Replace output dims the exporter wrongly declared fixed; True if the model changed.

    The exporter's shape metadata can pin output dims that follow a dynamic input (a GRU head exported
    from a batch-1 example declares ``[1, 3]``; a GRU's sequence output declares the example length),
    which makes onnxruntime warn on every call. Re-running ONNX shape inference from the inputs alone
    gets them right, so where it finds a dim dynamic that the exporter declared fixed, trust it.
    """
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.value_info[:]
    for o in probe.graph.output:
        o.type.tensor_type.ClearField("shape")
    try:
        inferred = onnx.shape_inference.infer_shapes(probe, data_prop=True).graph.output
    except Exception:  # inference is best effort; the parity check still catches wrong shapes
        return False
    changed = False
    for out, inf in zip(model.graph.output, inferred, strict=False):
        if not inf.type.tensor_type.HasField("shape"):
            continue
        dims, inf_dims = out.type.tensor_type.shape.dim, inf.type.tensor_type.shape.dim
        if len(dims) != len(inf_dims):
            continue
        for axis, (d, i) in enumerate(zip(dims, inf_dims, strict=False)):
            if d.HasField("dim_value") and not i.HasField("dim_value"):
                name = i.dim_param if i.dim_param and not i.dim_param.startswith("unk__") else None
                d.Clear()
                d.dim_param = name or f"{out.name}_dim{axis}"
                changed = True
    if changed:
        del model.graph.value_info[:]  # intermediate hints carry the same wrong sizes
    return changed


def resolve_dynamic_dims(dynamic_dims: Mapping[int, str | None] | None, ndim: int) -> dict[int, str]:
    """The dynamic axes of an ``ndim``-d input: ``dynamic_dims`` merged over the default ``{0: "batch"}``,
    axes mapped to ``None`` dropped (fixed). The one rule for ONNX and ``torch.export`` programs alike.

    Raises:
        ConfigError: ``dynamic_dims`` is not ``{axis: name}`` with axes of the input and identifier names.
    """
    merged: dict[int, str | None] = dict(DEFAULT_DYNAMIC_DIMS)
    if dynamic_dims is not None:
        if not isinstance(dynamic_dims, Mapping):
            raise ConfigError(f"dynamic_dims must be a dict {{axis: name}}, got {dynamic_dims!r}")
        for axis, name in dynamic_dims.items():
            if isinstance(axis, bool) or not isinstance(axis, int) or not -ndim <= axis < ndim:
                raise ConfigError(f"dynamic_dims axis {axis!r} is not an axis of a {ndim}-d input")
            if name is not None and (not isinstance(name, str) or not name.isidentifier()):
                raise ConfigError(f"dynamic_dims name for axis {axis} must be an identifier or None, got {name!r}")
            merged[axis % ndim] = name
    dims = {a: n for a, n in sorted(merged.items()) if n is not None}
    if len(set(dims.values())) != len(dims):
        raise ConfigError(f"dynamic_dims names must be distinct, got {dims}")
    return dims


@contextlib.contextmanager
def _quiet_registry():
    """Silence the exporter's registry while it loads: without torchvision it logs one warning per
    torchvision op it skips ("torchvision is not installed. Skipping torchvision::nms"), on every export.
    Nothing a slimkit user can or needs to act on."""
    log = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def _export(module: nn.Module, x: torch.Tensor, dims: dict[int, str], out_names: list[str],
            opset: int | None):
    clear_rnn_dispatch_cache()
    plain_rnn = plain_rnn_export() if rnn_hint(module) else None
    context, table = plain_rnn if plain_rnn is not None else (contextlib.nullcontext(), None)
    try:
        with warnings.catch_warnings(), context, _quiet_registry():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            # nn.LSTM/GRU re-assign _flat_weights while traced; harmless, and not the user's to fix
            warnings.filterwarnings("ignore", message=r".*were assigned during export", category=UserWarning)
            return torch.onnx.export(
                module, (x,), None, dynamo=True, input_names=[INPUT_NAME], output_names=out_names,
                dynamic_shapes=(dims,) if dims else None, opset_version=opset, external_data=False,
                verbose=False, custom_translation_table=table,
            )
    except Exception as e:  # the exporter raises many torch-internal types
        raise ExportError(f"torch.onnx.export failed: {_root_message(e)}\n(if the model cannot vary a dim "
                          "listed in dynamic_dims, keep it fixed with dynamic_dims={axis: None})") from e
    finally:
        clear_rnn_dispatch_cache()


def _root_message(e: BaseException, limit: int = 800) -> str:
    while e.__cause__ is not None:
        e = e.__cause__
    msg = f"{type(e).__name__}: {str(e).strip()}"
    return msg if len(msg) <= limit else msg[:limit] + " ..."


def _flat(out: object) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (tuple, list)) and all(isinstance(t, torch.Tensor) for t in out):
        return list(out)
    raise ExportError(f"the model must return a tensor or a tuple of tensors, got {type(out).__name__}")


def _probe(x: torch.Tensor, shape: list[int], gen: torch.Generator) -> torch.Tensor:
    if x.dtype.is_floating_point:
        return torch.randn(shape, generator=gen, dtype=x.dtype).to(x.device)
    if x.dtype == torch.bool:
        return torch.randint(0, 2, shape, generator=gen).bool().to(x.device)
    lo, hi = (int(x.min()), int(x.max())) if x.numel() else (0, 0)
    return torch.randint(lo, hi + 1, shape, generator=gen, dtype=x.dtype).to(x.device)


def _check_parity(module: nn.Module, x: torch.Tensor, onnx_path: Path, dims: dict[int, str],
                  rtol: float, atol: float) -> None:
    """Compare onnxruntime with PyTorch at two shapes that differ from ``x`` in every dynamic dim."""
    from slimkit.runtime.backends import OnnxRuntimeBackend

    backend = OnnxRuntimeBackend(onnx_path, threads=1)
    model_outputs = onnx.load(str(onnx_path), load_external_data=False).graph.output
    declared = [[d.dim_value if d.HasField("dim_value") else None for d in o.type.tensor_type.shape.dim]
                for o in model_outputs]
    gen = torch.Generator().manual_seed(0)
    base = list(x.shape)
    growths = [lambda s: s + 1, lambda s: s + 2, lambda s: 2 * s, lambda s: 3 * s, lambda s: 4 * s]
    # nothing dynamic: check the example shape itself, with fresh data
    shapes = [[g(s) if a in dims else s for a, s in enumerate(base)] for g in growths] if dims else [base]
    want, checked = (2 if dims else 1), 0
    for shape in shapes:
        probe = _probe(x, shape, gen)
        try:
            with torch.no_grad():
                out = module(probe)
        except Exception:
            continue  # the model itself rejects this size (e.g. needs even lengths): try another
        _compare(backend, probe, [t.detach().cpu().numpy() for t in _flat(out)], declared, rtol, atol)
        checked += 1
        if checked == want:
            return
    raise ExportError(f"could not find {want} input shapes besides {tuple(base)} that the PyTorch model "
                      f"accepts with dims {dims} changed, to check parity; if a dim cannot vary, keep it "
                      "fixed with dynamic_dims={axis: None}")


def _compare(backend, probe: torch.Tensor, ref: list[np.ndarray], declared: list[list[int | None]],
             rtol: float, atol: float) -> None:
    shape = tuple(probe.shape)
    try:
        got = backend.run(probe.detach().cpu().numpy())
    except Exception as e:
        raise ExportError(f"onnxruntime failed on input shape {shape} (a dim the graph treats as fixed?): "
                          f"{_root_message(e)}") from e
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
        if r.dtype.kind in "fc":
            ok = np.allclose(g, r, rtol=rtol, atol=atol, equal_nan=True)
        else:
            ok = np.array_equal(g, r)
        if not ok:
            err = float(np.max(np.abs(g.astype(np.float64) - r.astype(np.float64)))) if r.size else 0.0
            raise ExportError(f"onnxruntime output {i} differs from PyTorch at input shape {shape}: max abs "
                              f"error {err:.3g} exceeds rtol={rtol:g}, atol={atol:g}; an op may be exported "
                              "with different semantics or the model is non-deterministic")
