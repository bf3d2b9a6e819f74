"""``to_onnx``: export an ``nn.Module`` to one self-contained, validated, parity-checked ONNX file.

Uses the dynamo exporter (``torch.onnx.export(dynamo=True)``) and then refuses to hand back a file it
has not checked:

1. ``onnx.checker.check_model`` passes;
2. every dim asked to be dynamic really is (the exporter can silently pin a dim to the example's size);
3. onnxruntime matches eager PyTorch at two input shapes that differ from the export example in every
   dynamic dim (two batch sizes, two sequence lengths), and returns output shapes the graph declares
   (:mod:`slimkit.export.parity`).

The example may be one tensor (the graph input is then called ``"input"``), a tuple of tensors, or a dict
of tensors (``{"input_ids": ..., "attention_mask": ...}``); graph inputs take the names of the forward's
parameters. Which dims are dynamic is found from the model (the batch, and the sequence of recurrent,
attention and token models; :mod:`slimkit.export.input_dims`), and ``dynamic_dims`` overrides it. The
model is traced with every dynamic dim at least 2 (``torch.export`` bakes a size-1 dim into the graph).

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
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from slimkit.compress.input_axes import SINGLE_INPUT, Example, call_model, named_inputs
from slimkit.runtime.errors import ConfigError, ExportError

from .input_dims import Dims, export_dims, trace_inputs
from .onnx_rnn import clear_rnn_dispatch_cache, plain_rnn_export, refuse_unrolled_rnn, rnn_hint
from .parity import check_parity, flat_outputs, root_message

__all__ = ["to_onnx", "onnx_specs", "check_dynamic_dims"]

OUTPUT_NAME = "output"


def to_onnx(module: nn.Module, example_input: Example, path: str | os.PathLike, *,
            dynamic_dims: Mapping | None = None, opset: int | None = None,
            rtol: float = 1e-4, atol: float = 1e-5, fold_batchnorm: bool = True) -> Path:
    """Export ``module`` to a single ONNX file and verify it against PyTorch with onnxruntime.

    Args:
        module: the model (put in eval mode for the export; its mode is restored afterwards).
        example_input: one input tensor (any batch size) with the model's dtype and shape; or, for a model
            with several inputs, a tuple of tensors (the forward's positional parameters, in order) or a
            dict named after the forward's parameters (``{"input_ids": ids, "attention_mask": mask}``).
        path: where to write the ``.onnx`` file.
        dynamic_dims: overrides the dims found from the model (the batch, and the sequence of recurrent,
            attention and token models): ``{axis: name}`` for every input with that axis, or
            ``{input: {axis: name}}``; an axis mapped to ``None`` stays fixed (``{1: None}`` fixes the
            sequence, ``{0: None, 1: None}`` fixes everything). See :mod:`slimkit.export.input_dims`.
        opset: ONNX opset (default: the exporter's, 20 in torch 2.13).
        rtol: relative tolerance of the onnxruntime-vs-PyTorch parity check.
        atol: absolute tolerance of the parity check.
        fold_batchnorm: let the exporter fold ``BatchNormalization`` into the convolution before it
            (the default). ``False`` keeps the two apart in the file; onnxruntime and TensorRT fold
            them when they load it, so the graph that runs is the same, while the convolution keeps
            the weights it was trained with (``export.bundle`` uses this so that a family's widths,
            each with its own BatchNorm statistics, still share their convolution weights).

    Returns:
        ``Path(path)``.

    Raises:
        ExportError: the exporter failed, pinned a dynamic dim, or the file disagrees with PyTorch.
        ConfigError: bad arguments.

    Example:
        >>> model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
        >>> to_onnx(model, torch.randn(1, 16), "m.onnx")  # doctest: +SKIP
        PosixPath('m.onnx')
        >>> to_onnx(bert, {"input_ids": ids, "attention_mask": mask}, "bert.onnx")  # doctest: +SKIP
    """
    if not isinstance(module, nn.Module):
        raise ConfigError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    if opset is not None and (isinstance(opset, bool) or not isinstance(opset, int)):
        raise ConfigError(f"opset must be an int or None, got {opset!r}")
    if not isinstance(fold_batchnorm, bool):
        raise ConfigError(f"fold_batchnorm must be True or False, got {fold_batchnorm!r}")
    inputs, positional = named_inputs(module, example_input)
    dims = export_dims(module, inputs, positional, dynamic_dims)
    refuse_unrolled_rnn(module, {k: v for d in dims.values() for k, v in d.items()})

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    was_training = module.training
    module.eval()
    try:
        traced, ref = _traced(module, inputs, positional, dims)
        n_out = len(flat_outputs(ref))
        out_names = [OUTPUT_NAME] + [f"{OUTPUT_NAME}_{i}" for i in range(1, n_out)]
        prog = _export(module, traced, positional, dims, out_names, opset, fold_batchnorm)
        prog.save(str(tmp), external_data=False)
        model = onnx.load(str(tmp))
        try:
            onnx.checker.check_model(model)
        except onnx.checker.ValidationError as e:
            raise ExportError(f"the exported ONNX model fails onnx.checker: {e}") from e
        _check_input_names(model, list(inputs))
        check_dynamic_dims(model, dims)
        if any(dims.values()) and _unpin_outputs(model):
            onnx.save(model, str(tmp))
        check_parity(module, traced, positional, tmp, dims, rtol=rtol, atol=atol)
        os.replace(tmp, path)
    except ExportError as e:
        hint = rnn_hint(module)
        raise ExportError(f"{type(module).__name__} -> {path.name}: {e}" + (f"; {hint}" if hint else "")) from e
    finally:
        module.train(was_training)
        tmp.unlink(missing_ok=True)
        Path(f"{tmp}.data").unlink(missing_ok=True)
    return path


def _traced(module: nn.Module, inputs: dict[str, torch.Tensor], positional: bool,
            dims: Dims) -> tuple[dict[str, torch.Tensor], Any]:
    """The inputs to trace (every dynamic dim widened, :func:`trace_inputs`) and the model's output on them;
    the example as given when the model refuses the widened one."""
    with torch.no_grad():
        wide = trace_inputs(inputs, dims)
        try:
            return wide, call_model(module, wide, positional)
        except Exception:
            pass
        try:
            return inputs, call_model(module, inputs, positional)
        except Exception as e:
            shapes = {n: tuple(t.shape) for n, t in inputs.items()}
            raise ExportError(f"the model fails on example_input of shape "
                              f"{shapes.get(SINGLE_INPUT, shapes)} ({root_message(e)}); pass an input the model "
                              "accepts") from e


def _check_input_names(model: onnx.ModelProto, names: list[str]) -> None:
    got = [i.name for i in model.graph.input]
    if got != names:
        missing = [n for n in names if n not in got]
        raise ExportError(f"the exported graph takes inputs {got}, not {names}"
                          + (f": the model does not use {missing}; leave them out of the example input"
                             if missing else ""))


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


def check_dynamic_dims(model: onnx.ModelProto, dims: Mapping) -> None:
    """Raise ExportError if an input axis that should be dynamic has a fixed size in ``model``.

    ``dims`` is ``{input name: {axis: name}}``, or ``{axis: name}`` for the first input."""
    if dims and all(isinstance(k, int) for k in dims):
        dims = {model.graph.input[0].name: dims}
    by_name = {i.name: i.type.tensor_type.shape.dim for i in model.graph.input}
    for input_name, axes in dims.items():
        for axis, name in axes.items():
            d = by_name[input_name][axis]
            if d.HasField("dim_value") or not d.dim_param:
                where = f"input dim {axis}" if len(by_name) == 1 else f"dim {axis} of input {input_name!r}"
                raise ExportError(
                    f"{where} ({name!r}) was meant to be dynamic but the exporter pinned it to size "
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


@contextlib.contextmanager
def _batchnorm_kept():
    """While exporting, leave ``BatchNormalization`` out of the exporter's optimiser rules that fold it
    into the convolution before it (onnxscript's default rewrite rules; where this onnxscript lays them
    out differently, nothing changes and the export folds as usual)."""
    try:
        from onnxscript import rewriter
        from onnxscript.rewriter.rules.common import _fuse_batchnorm
        rules = rewriter._DEFAULT_REWRITE_RULES
        fold = set(_fuse_batchnorm.rules)
    except (ImportError, AttributeError, TypeError):
        yield
        return
    rewriter._DEFAULT_REWRITE_RULES = tuple(r for r in rules if r not in fold)
    try:
        yield
    finally:
        rewriter._DEFAULT_REWRITE_RULES = rules


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


def _export(module: nn.Module, inputs: dict[str, torch.Tensor], positional: bool, dims: Dims,
            out_names: list[str], opset: int | None, fold_batchnorm: bool = True):
    clear_rnn_dispatch_cache()
    plain_rnn = plain_rnn_export() if rnn_hint(module) else None
    context, table = plain_rnn if plain_rnn is not None else (contextlib.nullcontext(), None)
    keep_bn = contextlib.nullcontext() if fold_batchnorm else _batchnorm_kept()
    try:
        with warnings.catch_warnings(), context, keep_bn, _quiet_registry():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            # nn.LSTM/GRU re-assign _flat_weights while traced; harmless, and not the user's to fix
            warnings.filterwarnings("ignore", message=r".*were assigned during export", category=UserWarning)
            # two inputs sharing a dim (input_ids and attention_mask): the exporter names it once
            warnings.filterwarnings("ignore", message=r".*shares the same shape constraints", category=UserWarning)
            shapes = {n: d or None for n, d in dims.items()}
            return torch.onnx.export(
                module, tuple(inputs.values()) if positional else (), None,
                kwargs=None if positional else inputs, dynamo=True, input_names=list(inputs),
                output_names=out_names,
                dynamic_shapes=(tuple(shapes.values()) if positional else shapes) if any(dims.values()) else None,
                opset_version=opset, external_data=False, verbose=False, custom_translation_table=table,
            )
    except Exception as e:  # the exporter raises many torch-internal types
        raise ExportError(f"torch.onnx.export failed: {root_message(e)}\n(if the model cannot vary a dim "
                          "listed in dynamic_dims, keep it fixed with dynamic_dims={axis: None})") from e
    finally:
        clear_rnn_dispatch_cache()
