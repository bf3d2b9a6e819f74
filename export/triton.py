"""``to_triton``: a bundle as a Triton Inference Server model repository, one model per variant.

Layout (Triton's "Model Repository" docs)::

    repository/
      w0.50/             config.pbtxt, 1/model.onnx        platform onnxruntime_onnx
      w0.50-int8/        config.pbtxt, 1/model.onnx        the INT8 twin, when the bundle has one
      w0.50-trt/         config.pbtxt, 1/model_sm89.plan   platform tensorrt_plan, when engines exist
                         (cc_model_filenames maps each GPU compute capability to its plan)

Each config sets ``max_batch_size`` (the batch dim is left out of ``dims``), dynamic batching and an
instance group, and carries the variant's cost and metrics as ``parameters`` (``slimkit.macs``,
``slimkit.params``, ``slimkit.precision``, ``slimkit.metrics``) so a router in front of Triton can pick
a model per request by budget, the way :class:`slimkit.runtime.Engine` does.

A variant of a shared bundle (see :mod:`slimkit.export.sharing`) reads its shared tensors from the
bundle's ``weights.bin``, so that file goes beside its ``model.onnx`` (a hard link where the filesystem
allows, one copy on disk for all of them; otherwise a copy). Triton gives every model its own
onnxruntime session, so each still holds its own copy in memory.

The text is written here (no tritonclient import); the tests parse every file into Triton's own
``ModelConfig`` protobuf. Models are written into a temp dir and moved into ``repository`` one
directory at a time; an existing model of the same name is refused unless ``overwrite=True``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from slimkit.runtime.errors import ConfigError
from slimkit.runtime.manifest import Manifest, TensorSpec, VariantEntry, read_manifest, resolve_file

from .bundler import replace_dir

__all__ = ["to_triton"]

_TYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "float64": "TYPE_FP64", "int64": "TYPE_INT64",
          "int32": "TYPE_INT32", "int16": "TYPE_INT16", "int8": "TYPE_INT8", "uint8": "TYPE_UINT8",
          "bool": "TYPE_BOOL"}
_KINDS = ("auto", "KIND_CPU", "KIND_GPU")


def to_triton(bundle: str | os.PathLike, repository: str | os.PathLike, *, max_batch_size: int = 64,
              instances: int = 1, kind: str = "auto", preferred_batch_sizes: Sequence[int] = (),
              max_queue_delay_us: int = 100, precisions: Sequence[str] | None = None,
              tensorrt_version: str | None = None, prefix: str = "", threads: int | None = 1,
              overwrite: bool = False) -> Path:
    """Write a Triton model repository serving every variant (and twin, and TensorRT engine) of ``bundle``.

    Args:
        bundle: a bundle directory (its files are verified first).
        repository: the model repository (created if missing; other models in it are left alone).
        max_batch_size: Triton's ``max_batch_size`` (capped by a TensorRT plan's profile).
        instances: model instances per device (``instance_group.count``).
        kind: ``"KIND_CPU"``, ``"KIND_GPU"`` or ``"auto"`` (CPU for ONNX models, GPU for plans).
        preferred_batch_sizes: dynamic batching's preferred sizes (default: none, Triton's default).
        max_queue_delay_us: how long dynamic batching waits to fill a batch.
        precisions: which precisions to export (default all the bundle holds, e.g. fp32 and int8).
        tensorrt_version: which TensorRT version's plans to use when the bundle holds several (Triton
            runs one); default the only one present.
        prefix: prepended to each model name (e.g. ``"mnist-"``).
        threads: onnxruntime intra-op threads per instance (``None``: the backend's default).
        overwrite: replace models of the same name already in ``repository``.

    Returns:
        ``Path(repository)``.

    Raises:
        ConfigError: bad arguments, a model name already taken, several TensorRT versions without
            ``tensorrt_version``. BundleError: the bundle does not verify.

    Example:
        >>> export.to_triton("out/bundle", "model_repository/")  # doctest: +SKIP
        PosixPath('model_repository')
    """
    for name, v, low in (("max_batch_size", max_batch_size, 0), ("instances", instances, 1),
                         ("max_queue_delay_us", max_queue_delay_us, 0)):
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ConfigError(f"{name} must be an int >= {low}, got {v!r}")
    if kind not in _KINDS:
        raise ConfigError(f"kind must be one of {_KINDS}, got {kind!r}")
    if any(isinstance(b, bool) or not isinstance(b, int) or not 0 < b <= max(max_batch_size, 1)
           for b in preferred_batch_sizes):
        raise ConfigError(f"preferred_batch_sizes must be ints in [1, max_batch_size={max_batch_size}], "
                          f"got {list(preferred_batch_sizes)}")
    src = Path(bundle)
    m = read_manifest(src)
    wanted = list(precisions) if precisions is not None else m.precisions
    unknown = [p for p in wanted if p not in m.precisions]
    if unknown:
        raise ConfigError(f"precisions {unknown} are not in this bundle; it holds {m.precisions}")
    if any(s.dtype not in _TYPES for s in m.inputs + m.outputs):
        raise ConfigError(f"tensor dtypes {[s.dtype for s in m.inputs + m.outputs]} have no Triton type here")
    entries = [v for v in m.variants + m.twins if v.precision in wanted]
    trt = _trt_version(entries, tensorrt_version)

    repo = Path(repository)
    repo.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{repo.name}.triton-", dir=repo.resolve().parent))
    try:
        models: list[str] = []
        for v in entries:
            models.append(_onnx_model(tmp, src, m, v, prefix, max_batch_size, instances, kind,
                                      preferred_batch_sizes, max_queue_delay_us, threads))
            plans = {k: f for k, f in v.files.items() if trt and k.startswith(f"tensorrt/{trt}/")}
            if plans:
                models.append(_plan_model(tmp, src, m, v, plans, prefix, max_batch_size, instances, kind,
                                          preferred_batch_sizes, max_queue_delay_us))
        taken = [n for n in models if (repo / n).exists()]
        if taken and not overwrite:
            raise ConfigError(f"{repo} already has models {taken}; pass overwrite=True to replace them "
                              "or prefix= to name these differently")
        for n in models:
            replace_dir(tmp / n, repo / n)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return repo


def _trt_version(entries: list[VariantEntry], wanted: str | None) -> str | None:
    found = sorted({k.split("/")[1] for v in entries for k in v.files if k.startswith("tensorrt/")})
    if wanted is not None:
        if wanted not in found:
            raise ConfigError(f"tensorrt_version={wanted!r}: the bundle has plans for {found or 'no version'}")
        return wanted
    if len(found) > 1:
        raise ConfigError(f"the bundle has TensorRT plans for versions {found}; Triton links one TensorRT, "
                          "so pass tensorrt_version= (the one your Triton release ships)")
    return found[0] if found else None


def _onnx_model(tmp: Path, src: Path, m: Manifest, v: VariantEntry, prefix: str, mbs: int, instances: int,
                kind: str, preferred: Sequence[int], delay: int, threads: int | None) -> str:
    name = prefix + v.name
    (tmp / name / "1").mkdir(parents=True)
    shutil.copyfile(resolve_file(src, v.files["onnx"].path), tmp / name / "1" / "model.onnx")
    if "weights" in v.files:  # the graph reads its shared tensors from this file, beside it
        weights, dst = resolve_file(src, v.files["weights"].path), tmp / name / "1" / v.files["weights"].path
        try:
            os.link(weights, dst)  # one copy on disk for every model of the repository
        except OSError:
            shutil.copyfile(weights, dst)
    extra = {"intra_op_thread_count": str(threads)} if threads else {}
    _write_config(tmp / name, name, "onnxruntime_onnx", m, v, mbs, instances,
                  "KIND_CPU" if kind == "auto" else kind, preferred, delay, extra, {})
    return name


def _plan_model(tmp: Path, src: Path, m: Manifest, v: VariantEntry, plans: dict, prefix: str, mbs: int,
                instances: int, kind: str, preferred: Sequence[int], delay: int) -> str:
    name = f"{prefix}{v.name}-trt"
    (tmp / name / "1").mkdir(parents=True)
    cc_files = {}
    for key, f in sorted(plans.items()):
        sm = key.split("/")[2]  # "sm89"
        fname = f"model_{sm}.plan"
        shutil.copyfile(resolve_file(src, f.path), tmp / name / "1" / fname)
        cc_files[f"{sm[2:-1]}.{sm[-1]}"] = fname  # Triton keys by "8.9"
        mbs = min(mbs, int((f.meta or {}).get("max_batch", mbs)))
    if kind == "KIND_CPU":
        raise ConfigError("TensorRT plans run on GPUs only; pass kind='auto' or 'KIND_GPU'")
    _write_config(tmp / name, name, "tensorrt_plan", m, v, mbs, instances, "KIND_GPU", preferred, delay, {},
                  cc_files)
    return name


def _dims(spec: TensorSpec, batched: bool) -> str:
    dims = spec.shape[1:] if batched else spec.shape
    return ", ".join("-1" if d is None else str(d) for d in dims)


def _write_config(folder: Path, name: str, platform: str, m: Manifest, v: VariantEntry, mbs: int,
                  instances: int, kind: str, preferred: Sequence[int], delay: int, params: dict[str, str],
                  cc_files: dict[str, str]) -> None:
    batched = mbs > 0 and all(s.shape and s.shape[0] is None for s in m.inputs)
    lines = [f"name: {_q(name)}", f"platform: {_q(platform)}", f"max_batch_size: {mbs if batched else 0}"]
    for field, specs in (("input", m.inputs), ("output", m.outputs)):
        tensors = [f"  {{\n    name: {_q(s.name)}\n    data_type: {_TYPES[s.dtype]}\n"
                   f"    dims: [ {_dims(s, batched)} ]\n  }}" for s in specs]
        lines.append(f"{field} [\n" + ",\n".join(tensors) + "\n]")
    lines.append(f"instance_group [\n  {{\n    count: {instances}\n    kind: {kind}\n  }}\n]")
    if batched:
        pref = f"\n  preferred_batch_size: [ {', '.join(map(str, preferred))} ]" if preferred else ""
        lines.append(f"dynamic_batching {{{pref}\n  max_queue_delay_microseconds: {delay}\n}}")
    if cc_files:
        lines.append(f"default_model_filename: {_q(next(iter(cc_files.values())))}")
        lines += [f"cc_model_filenames {{\n  key: {_q(cc)}\n  value: {_q(f)}\n}}" for cc, f in cc_files.items()]
    meta = {"slimkit.macs": str(v.macs), "slimkit.params": str(v.params), "slimkit.precision": v.precision,
            "slimkit.variant": v.base or v.name, "slimkit.metrics": json.dumps(v.metrics, sort_keys=True),
            **params}
    lines += [f"parameters {{\n  key: {_q(k)}\n  value {{\n    string_value: {_q(val)}\n  }}\n}}"
              for k, val in meta.items()]
    (folder / "config.pbtxt").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _q(s: str) -> str:
    """A protobuf text-format string literal (JSON escaping is a valid subset for these values)."""
    return json.dumps(s)
