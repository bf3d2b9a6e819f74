"""``bundle``: write a Family as a deployable bundle (``manifest.json`` + one ONNX file per variant).

When variants share tensors (a nested family: SortedNet widths, boosting stages), each shared tensor is
stored once, in ``weights.bin``, and every variant's graph reads its ranges (see
:mod:`slimkit.export.sharing`); a family whose variants share nothing is written as before, one
self-contained file per variant. The variants of a family of several are exported with their
BatchNorm kept apart from the convolution (onnxruntime folds it at load, so the graph that runs is
the same) so that widths with their own BatchNorm statistics still share their convolution weights;
if nothing turns out shared, they are exported again as usual.

Optional extras in the same atomic write: an INT8 twin of every variant (``quantize="int8"``, see
:mod:`slimkit.export.quantize`; twins are named ``"<variant>-int8"`` and served with
``runtime.load(dir, precision="int8")``), and ``torch.export`` programs for the torch backend
(``torch_export=True``).

Everything is written into a temp dir beside the target and renamed into place at the end; any
failure removes the temp dir and leaves the target as it was. The schema is owned by
:mod:`slimkit.runtime.manifest`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import onnx
import torch

from slimkit.compress.input_axes import SINGLE_INPUT, named_inputs
from slimkit.runtime.errors import ConfigError, ExportError
from slimkit.runtime.manifest import (
    FileEntry,
    Manifest,
    TensorSpec,
    VariantEntry,
    WeightsEntry,
    check_variant_name,
    read_manifest,
    sha256_file,
    write_manifest,
)

from .input_dims import every_axis, export_dims, trace_inputs
from .onnx import onnx_specs, to_onnx
from .sharing import WEIGHTS_FILE, find_shared, share_bundle

__all__ = ["bundle", "QUANTIZE", "replace_dir", "file_sizes"]

QUANTIZE = (None, "int8")
INT8_SUFFIX = "-int8"


def bundle(family: Any, example_input: Any = None, path: str | os.PathLike | None = None,
           *, dynamic_dims: Mapping | None = None, opset: int | None = None,
           overwrite: bool = False, quantize: str | None = None, calibration: Any = None,
           eval_data: Any = None, torch_export: bool = False,
           latency_batches: tuple[int, ...] = (1, 32), share_weights: bool = True) -> Path:
    """Export every variant of ``family`` to ``<path>/<variant>.onnx`` and write the manifest.

    Tensors that variants share are written once, to ``<path>/weights.bin``, which the graphs read
    (module docs); ``runtime.load(path, share_weights=True)`` then also holds them once in memory.

    Args:
        family: a :class:`slimkit.compress.Family`.
        example_input: one input tensor; default ``family.example_input``. (``bundle(fam, "dir")``
            also works: a path in this position is taken as ``path``.) For a model with several inputs, a
            dict named after the forward's parameters (``{"input_ids": ..., "attention_mask": ...}``) or a
            tuple, as in :func:`slimkit.export.to_onnx`; every input is named in the manifest.
        path: the bundle directory to create.
        dynamic_dims: overrides the input axes that vary (default: the family's own,
            :attr:`Family.dynamic_dims`: the batch, and the sequence of recurrent, attention and token
            models; found from the model for an example of another form), as in
            :func:`slimkit.export.to_onnx`: ``{1: None}`` fixes the sequence.
        opset: ONNX opset (default: the exporter's).
        overwrite: replace an existing non-empty ``path``.
        quantize: ``"int8"`` adds an INT8 twin ``"<variant>-int8"`` of each variant (static QDQ
            quantisation calibrated on ``calibration``; dynamic, with a warning, without it). Each twin's
            metrics are measured with onnxruntime on ``eval_data`` (default: ``calibration``) together
            with its FP32 variant's on the same data (``config["fp32_metrics_same_data"]``), and both
            are timed on onnxruntime CPU at ``latency_batches`` (1 thread) into the manifest.
        calibration: a DataLoader of ``(inputs, targets)`` (the validation loader), or input batches.
        eval_data: a DataLoader of ``(inputs, targets)`` to score the twins on.
        torch_export: also save each variant as a ``torch.export`` program ``<variant>.pt2`` (file kind
            ``"torch_export"``) for ``runtime.load(dir, backend="torch")``.
        latency_batches: batch sizes timed when ``quantize`` is set (``()`` skips timing).
        share_weights: store the tensors variants share once, in ``weights.bin`` (the default; a family
            whose variants share nothing is written as self-contained files either way). ``False``
            writes every variant as one self-contained file, for tools that need standalone files.

    Returns:
        ``Path(path)``.

    Raises:
        ConfigError: ``path`` exists and is not empty (without ``overwrite``), or bad arguments.
        ExportError: a variant failed to export or to match PyTorch; nothing is written then.

    Example:
        >>> export.bundle(fam, fam.example_input, "out/bundle")  # doctest: +SKIP
        PosixPath('out/bundle')
    """
    if path is None and isinstance(example_input, (str, os.PathLike)):
        example_input, path = None, example_input
    if path is None:
        raise ConfigError("bundle needs a target directory: export.bundle(family, example_input, 'out/bundle')")
    for attr in ("variants", "method", "task", "source"):
        if not hasattr(family, attr):
            raise ConfigError(f"bundle expects a slimkit Family (from slimkit.compress), got "
                              f"{type(family).__name__} without .{attr}")
    if example_input is None:
        example_input = getattr(family, "example_input", None)
        if example_input is None:
            raise ConfigError("the family has no example_input; pass example_input= (one input tensor)")
    names = [check_variant_name(v.name) for v in family.variants]
    if not names:
        raise ConfigError("the family has no variants to export")
    inputs, positional = named_inputs(family.variants[-1].model, example_input)
    dims = export_dims(family.variants[-1].model, inputs, positional, dynamic_dims, found=_family_dims(family, inputs))
    if torch_export and list(inputs) != [SINGLE_INPUT]:
        raise ConfigError(f"torch_export=True serves single-input models; this one takes {list(inputs)}: bundle "
                          "without it (ONNX serves several inputs)")
    if quantize not in QUANTIZE:
        raise ConfigError(f"quantize must be one of {QUANTIZE}, got {quantize!r}")
    if quantize is None and (calibration is not None or eval_data is not None):
        raise ConfigError('calibration= and eval_data= are used with quantize="int8"; pass it too')
    if quantize:
        for n in names:
            check_variant_name(n + INT8_SUFFIX)
    if not isinstance(share_weights, bool):
        raise ConfigError(f"share_weights must be True or False, got {share_weights!r}")
    share = share_weights and len(names) > 1

    target = Path(path)
    if target.exists() and not target.is_dir():
        raise ConfigError(f"{target} exists and is not a directory; pick another path")
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        raise ConfigError(f"{target} exists and is not empty; pass overwrite=True to replace it "
                          "or pick another directory")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        entries, specs = [], None
        _export_variants(family, example_input, tmp, every_axis(dims, inputs), opset, share)
        for v in family.variants:
            file = tmp / f"{v.name}.onnx"
            io = onnx_specs(onnx.load(str(file), load_external_data=False))
            if specs is None:
                specs = io
            elif io[0] != specs[0] or [o["dtype"] for o in io[1]] != [o["dtype"] for o in specs[1]]:
                raise ExportError(f"variant {v.name!r} has inputs {io[0]} / outputs {io[1]} but "
                                  f"{family.variants[0].name!r} has {specs[0]} / {specs[1]}; every variant "
                                  "of a bundle must take the same input and give outputs of the same dtype")
            files = {"onnx": FileEntry(file.name, sha256_file(file))}
            if torch_export:
                pt2 = _save_program(v.model, inputs[SINGLE_INPUT], tmp / f"{v.name}.pt2", dims[SINGLE_INPUT])
                files["torch_export"] = FileEntry(pt2.name, sha256_file(pt2))
            entries.append(VariantEntry(
                name=v.name, params=int(v.params), macs=int(v.macs),
                metrics={**{k: float(x) for k, x in dict(v.metrics).items()}, **file_sizes(file)},
                config=dict(v.config),
                files=files, latency={}))
        twins = []
        for e in entries if quantize else []:
            twins.append(_int8_twin(tmp, e, calibration, eval_data, str(family.task)))
        weights = _share(tmp, entries + twins, inputs) if share else None
        in_specs, outputs = specs
        for spec in in_specs:  # the example's concrete shape lets the runtime time latency later
            spec["example_shape"] = [int(s) for s in inputs[spec["name"]].shape]
        manifest = Manifest(
            inputs=[_spec(s) for s in in_specs], outputs=[_spec(s) for s in outputs], variants=entries,
            task=str(family.task), method=str(family.method), source=_jsonable(family.source), twins=twins,
            weights=weights)
        write_manifest(tmp, manifest)
        if quantize and latency_batches:
            _time_precisions(tmp, tuple(latency_batches))
        read_manifest(tmp)  # what we hand over must load
        replace_dir(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _export_variants(family: Any, example: Any, root: Path, dynamic_dims: Mapping, opset: int | None,
                     share: bool) -> None:
    """Each variant to ``<root>/<name>.onnx``; BatchNorm kept apart when that lets variants share."""
    for v in family.variants:
        to_onnx(v.model, example, root / f"{v.name}.onnx", dynamic_dims=dynamic_dims, opset=opset,
                fold_batchnorm=not share)
    if not share:
        return
    models = {v.name: onnx.load(str(root / f"{v.name}.onnx")) for v in family.variants}
    kept = [n for n, m in models.items() if any(node.op_type == "BatchNormalization" for node in m.graph.node)]
    if kept and not find_shared(models):  # nothing to share: the files as a plain export writes them
        for v in family.variants:
            if v.name in kept:
                to_onnx(v.model, example, root / f"{v.name}.onnx", dynamic_dims=dynamic_dims, opset=opset)


def _share(root: Path, entries: list[VariantEntry], inputs: Mapping[str, torch.Tensor]) -> WeightsEntry | None:
    """Store the tensors the entries' graphs share once; update their file records in place."""
    probe = {n: t.detach().cpu().numpy() for n, t in inputs.items()}
    shared = share_bundle(root, [e.name for e in entries], probe)
    if shared is None:
        return None
    weights, split_files = shared
    for e in entries:
        if e.name in split_files:
            onnx_file, split = e.files["onnx"].path, split_files[e.name]
            e.files["onnx"] = FileEntry(onnx_file, sha256_file(root / onnx_file))
            if split is not None:
                e.files["onnx_shared"] = FileEntry(split, sha256_file(root / split))
            e.files["weights"] = FileEntry(WEIGHTS_FILE, weights.sha256)
    return weights


def _int8_twin(root: Path, entry: VariantEntry, calibration: Any, eval_data: Any, task: str) -> VariantEntry:
    """Quantise ``entry``'s ONNX file into ``<name>-int8.onnx`` and score both on the same data."""
    from .quantize import evaluate_onnx, quantize_onnx

    name = entry.name + INT8_SUFFIX
    src, dst = root / entry.files["onnx"].path, root / f"{name}.onnx"
    recipe = quantize_onnx(src, dst, calibration=calibration)
    config: dict[str, Any] = {**entry.config, "quantization": recipe}
    metrics: dict[str, float] = {}
    data = eval_data if eval_data is not None else calibration
    if data is not None and not _is_tensor(data):
        fp32, int8 = evaluate_onnx(src, data, task=task), evaluate_onnx(dst, data, task=task)
        metrics = {k: v for k, v in int8.items() if k != "predictions"}
        config["fp32_metrics_same_data"] = {k: v for k, v in fp32.items() if k != "predictions"}
        same = fp32["predictions"] == int8["predictions"] if task == "classification" else None
        if same is not None:
            config["top1_agreement_with_fp32"] = float(same.mean())
        drop = config["fp32_metrics_same_data"].get("accuracy", 0.0) - metrics.get("accuracy", 0.0)
        if drop > 0.01:
            warnings.warn(f"{name} is {100 * drop:.1f} points less accurate than {entry.name}; consider "
                          "per-channel quantisation or more calibration data", stacklevel=3)
    config["metrics_on"] = "eval_data" if eval_data is not None else "calibration data"
    metrics.update(file_sizes(dst))
    return VariantEntry(name=name, params=entry.params, macs=entry.macs, metrics=metrics, config=config,
                        files={"onnx": FileEntry(dst.name, sha256_file(dst))}, latency={},
                        precision="int8", base=entry.name)


def file_sizes(path: Path) -> dict[str, float]:
    """Honest on-disk sizes of one model file: as written, and zlib-compressed (what a sparse or
    low-entropy model saves in transit and storage; onnxruntime still loads the dense file)."""
    data = path.read_bytes()
    return {"onnx_bytes": float(len(data)), "onnx_zlib_bytes": float(len(zlib.compress(data, 6)))}


def _is_tensor(x: Any) -> bool:
    return hasattr(x, "shape") and hasattr(x, "dtype")


def _time_precisions(root: Path, batches: tuple[int, ...]) -> None:
    """Time every variant and twin on onnxruntime CPU, 1 thread, in one run, into the manifest."""
    from slimkit.runtime.backends import open_backends
    from slimkit.runtime.engine import Engine

    base = read_manifest(root, verify=False)
    for precision in base.precisions:
        m = base.with_precision(precision)  # a new object; latencies are merged into the file on disk
        Engine(m, open_backends(root, m, threads=1), bundle_dir=root, threads=1).measure_latency(
            batches=batches, repeats=50, save=True)


def _family_dims(family: Any, inputs: Mapping[str, torch.Tensor]) -> dict[str, dict[int, str]] | None:
    """The family's recorded input axes, when the example is one tensor of the family's rank; else None
    (found from the model)."""
    own = getattr(family, "example_input", None)
    x = inputs.get(SINGLE_INPUT)
    if len(inputs) != 1 or x is None or not isinstance(own, torch.Tensor) or own.dim() != x.dim():
        return None
    dims = getattr(family, "dynamic_dims", None)
    return {SINGLE_INPUT: dict(dims)} if dims is not None else None


def _save_program(model: torch.nn.Module, example: torch.Tensor, path: Path, dims: Mapping[int, str]) -> Path:
    """``torch.export`` ``model`` with the same dynamic dims as its ONNX file, check it, save ``path``."""
    # a size-1 example would let torch.export specialise the dim to 1, so trace at size 2 (as the ONNX export)
    x = trace_inputs({SINGLE_INPUT: example}, {SINGLE_INPUT: dict(dims)})[SINGLE_INPUT]
    shapes = {a: torch.export.Dim.DYNAMIC for a in dims}
    was_training = model.training
    model.eval()
    try:
        prog = torch.export.export(model, (x,), dynamic_shapes=(shapes,))
        torch.export.save(prog, str(path))
        loaded = torch.export.load(str(path)).module()
        with torch.no_grad():
            for b in (1, 3) if 0 in shapes else (x.shape[0],):
                xb = torch.randn(b, *x.shape[1:], dtype=x.dtype) if x.is_floating_point() else x[:1].repeat(b, *[1] * (x.dim() - 1))
                ref, got = model(xb), loaded(xb)
                if not torch.allclose(ref, got, rtol=1e-4, atol=1e-5):
                    raise ExportError(f"{path.name}: the torch.export program differs from the model at batch "
                                      f"{b} (max |diff| {float((ref - got).abs().max()):.3g})")
    except ExportError:
        raise
    except Exception as e:
        raise ExportError(f"torch.export failed for {path.stem} ({type(e).__name__}: {e}); bundle without "
                          "torch_export=True to ship ONNX only") from e
    finally:
        model.train(was_training)
    return path


def _spec(d: dict) -> TensorSpec:
    names = d.get("dim_names")
    return TensorSpec(d["name"], d["dtype"], tuple(d["shape"]),
                      tuple(names) if names and any(names) else None,
                      tuple(d["example_shape"]) if d.get("example_shape") else None)


def _jsonable(x: Any) -> Any:
    """``source`` may hold numpy/torch scalars; turn them into plain JSON values."""
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if hasattr(x, "item") and callable(x.item):
        return x.item()
    return x


def replace_dir(tmp: Path, target: Path) -> None:
    """Move the finished directory ``tmp`` to ``target`` (same filesystem), replacing what is there: the old
    directory is renamed aside first and restored if the move fails, then removed."""
    if not target.exists():
        os.replace(tmp, target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    old.rmdir()
    os.replace(target, old)
    try:
        os.replace(tmp, target)
    except BaseException:
        os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)
