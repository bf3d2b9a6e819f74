"""``bundle``: write a Family as a deployable bundle (``manifest.json`` + one ONNX file per variant).

Everything is written into a temp dir beside the target and renamed into place at the end; any
failure removes the temp dir and leaves the target as it was. The schema is owned by
:mod:`slimkit.runtime.manifest`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import onnx
import torch

from slimkit.runtime.errors import ConfigError, ExportError
from slimkit.runtime.manifest import (
    FileEntry,
    Manifest,
    TensorSpec,
    VariantEntry,
    check_variant_name,
    read_manifest,
    sha256_file,
    write_manifest,
)

from .onnx import onnx_specs, to_onnx

__all__ = ["bundle"]


def bundle(family: Any, example_input: torch.Tensor | None = None, path: str | os.PathLike | None = None,
           *, dynamic_dims: Mapping[int, str | None] | None = None, opset: int | None = None,
           overwrite: bool = False) -> Path:
    """Export every variant of ``family`` to ``<path>/<variant>.onnx`` and write the manifest.

    Args:
        family: a :class:`slimkit.compress.Family`.
        example_input: one input tensor; default ``family.example_input``. (``bundle(fam, "dir")``
            also works: a path in this position is taken as ``path``.)
        path: the bundle directory to create.
        dynamic_dims: as in :func:`slimkit.export.to_onnx` (default ``{0: "batch"}``).
        opset: ONNX opset (default: the exporter's).
        overwrite: replace an existing non-empty ``path``.

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
    if not isinstance(example_input, torch.Tensor):
        raise ConfigError(f"example_input must be a torch.Tensor, got {type(example_input).__name__}")
    names = [check_variant_name(v.name) for v in family.variants]
    if not names:
        raise ConfigError("the family has no variants to export")

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
        for v in family.variants:
            file = tmp / f"{v.name}.onnx"
            to_onnx(v.model, example_input, file, dynamic_dims=dynamic_dims, opset=opset)
            io = onnx_specs(onnx.load(str(file), load_external_data=False))
            if specs is None:
                specs = io
            elif io[0] != specs[0] or [o["dtype"] for o in io[1]] != [o["dtype"] for o in specs[1]]:
                raise ExportError(f"variant {v.name!r} has inputs {io[0]} / outputs {io[1]} but "
                                  f"{family.variants[0].name!r} has {specs[0]} / {specs[1]}; every variant "
                                  "of a bundle must take the same input and give outputs of the same dtype")
            entries.append(VariantEntry(
                name=v.name, params=int(v.params), macs=int(v.macs),
                metrics={k: float(x) for k, x in dict(v.metrics).items()}, config=dict(v.config),
                files={"onnx": FileEntry(file.name, sha256_file(file))}, latency={}))
        inputs, outputs = specs
        for spec in inputs:  # the example's concrete shape lets the runtime time latency later
            spec["example_shape"] = [int(s) for s in example_input.shape]
        manifest = Manifest(
            inputs=[_spec(s) for s in inputs], outputs=[_spec(s) for s in outputs], variants=entries,
            task=str(family.task), method=str(family.method), source=_jsonable(family.source))
        write_manifest(tmp, manifest)
        read_manifest(tmp)  # what we hand over must load
        _move_into_place(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


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


def _move_into_place(tmp: Path, target: Path) -> None:
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
