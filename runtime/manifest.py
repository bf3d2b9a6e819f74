"""The bundle schema: read, validate and write ``manifest.json`` (format ``slimkit-bundle``, version 1).

A bundle is a directory with ``manifest.json`` and one ONNX graph per variant; the tensors its variants
share (a nested family: SortedNet widths, boosting stages) are stored once, in one weights file::

    {"format": "slimkit-bundle", "version": 1,
     "inputs":  [{"name": "input", "dtype": "float32", "shape": [null, 1, 40],
                  "dim_names": ["batch", null, null],          # optional
                  "example_shape": [1, 1, 40]}],               # optional: the export example's shape
     "outputs": [{"name": "output", "dtype": "float32", "shape": [null, 10]}],
     "task": "classification", "method": "sortednet",
     "source": {"params": ..., "macs": ..., "metrics": {...}},
     "variants": [{"name": "w0.50", "params": 1234, "macs": 56789, "metrics": {"accuracy": 0.91},
                   "config": {...},
                   "files": {"onnx": {"path": "w0.50.onnx", "sha256": "<64 hex digits>"},
                             "onnx_shared": {"path": "w0.50.shared.onnx", "sha256": "..."},  # shared only
                             "weights": {"path": "weights.bin", "sha256": "..."}},           # shared only
                   "latency": {...}}],
     "weights": {"path": "weights.bin", "sha256": "...", "bytes": 330880,                     # shared only
                 "tensors": {"shared.3.1.16": "float32[16,8,3]@4096", ...}}}

``shape`` holds ``null`` for dynamic dimensions; ``dim_names`` (optional, same length) names them, and
``example_shape`` (optional) is the concrete shape of the export example, used to time latency when a
dimension other than the batch is dynamic.

**Inputs.** ``inputs`` lists every input the model takes, in the order of its forward's parameters: one
``"input"`` for a model exported from one tensor, or each by name (``"input_ids"``, ``"attention_mask"``)
for a model exported from a dict or tuple. ``dim_names`` name the dynamic dims as the exporter found them:
``"batch"`` (the axis of independent samples, 0 unless the model is fed time-first) and ``"sequence"``
(recurrent, attention and token models); dims with the same name in several inputs are one dim, and a
request's inputs must agree on its size (:mod:`slimkit.runtime.feeds`). An engine serving several inputs
takes ``{name: array}``::

     "inputs": [{"name": "input_ids", "dtype": "int64", "shape": [null, null],
                 "dim_names": ["batch", "sequence"], "example_shape": [2, 8]},
                {"name": "attention_mask", "dtype": "int64", "shape": [null, null],
                 "dim_names": ["batch", "sequence"], "example_shape": [2, 8]}]

**Shared weights** (written by ``export.bundle`` when variants share tensors, see
:mod:`slimkit.export.sharing`). Without sharing, each ``"onnx"`` file is self-contained, as in every
bundle before. With it, the ``"onnx"`` graphs keep their own small tensors and read the shared ones as
ONNX external data from the file in ``"weights"``; onnxruntime loads such a graph like any other, and
the graph it runs is the one a self-contained file gives. ``"weights"["tensors"]`` lists every range
the graphs read (name: dtype, shape and byte offset), so ``runtime.load(dir, share_weights=True)`` can
hand each session views of one buffer without parsing ONNX; ``"onnx_shared"`` is the graph it then
runs (its layers split to read those ranges in place). Each variant that reads the file lists it
among its files too, so readers that predate this field still verify it. The format stays version 1:
the additions are optional and a reader that ignores them serves the bundle correctly.

**Latency schema.** ``variant["latency"]`` maps ``"<backend>/<device>"`` (e.g. ``"onnxruntime/cpu"``,
``"onnxruntime/cuda"``) to one measurement record::

    {"onnxruntime/cpu": {"batch": {"1":  {"p50_ms": 0.021, "p95_ms": 0.034, "repeats": 200},
                                   "64": {"p50_ms": 0.310, "p95_ms": 0.402, "repeats": 200}},
                         "threads": 1, "measured_at": "2026-11-26T22:00:00+00:00"}}

Batch sizes are JSON object keys, hence strings. ``p50_ms`` and ``p95_ms`` are required per batch;
``repeats``, ``threads`` and ``measured_at`` are optional. :func:`update_latency` merges new
measurements into a bundle's manifest and writes it back atomically (temp file + ``os.replace``).

**Precision twins.** ``export.bundle(..., quantize="int8")`` adds, per variant, a record in the
top-level ``"twins"`` list: a full variant record (own name ``"w0.50-int8"``, files, metrics, latency)
plus ``"precision": "int8"`` and ``"base": "w0.50"``. ``variants`` stays the FP32 serving set, so budget
selection never mixes precisions and readers that predate twins still serve the bundle unchanged;
:meth:`Manifest.with_precision` gives the manifest an engine serves at another precision.

**TensorRT engines.** A plan only runs on the TensorRT version and GPU compute capability that built
it, so a variant's engines are file kinds keyed by both, ``"tensorrt/<trt version>/sm<major><minor>"``
(see :func:`tensorrt_key`), each with a ``meta`` object (precision, batch profile, device name). A
``"torch_export"`` file kind holds a ``torch.export`` program (``.pt2``) for the torch backend.

The records (:class:`Manifest`, :class:`VariantEntry`, ...) and their field checks live in
:mod:`slimkit.runtime.manifest_schema`; this module re-exports them and does the file I/O.

Loading verifies every file's sha256 (the weights file included, once) and refuses any path that is
absolute, contains ``..`` or resolves (through symlinks) outside the bundle directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath, PureWindowsPath

from .errors import BundleError, ConfigError
from .manifest_schema import (
    FORMAT,
    MANIFEST_NAME,
    PRECISIONS,
    SUPPORTED_VERSIONS,
    VERSION,
    FileEntry,
    Manifest,
    TensorRange,
    TensorSpec,
    VariantEntry,
    WeightsEntry,
    check_variant_name,
    tensorrt_key,
)

__all__ = [
    "FORMAT", "VERSION", "SUPPORTED_VERSIONS", "MANIFEST_NAME",
    "TensorSpec", "FileEntry", "VariantEntry", "Manifest", "TensorRange", "WeightsEntry",
    "read_manifest", "write_manifest", "sha256_file", "update_latency", "check_variant_name",
    "PRECISIONS", "tensorrt_key", "resolve_file", "atomic_write_text",
]


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# -- paths -------------------------------------------------------------------------------------------


def resolve_file(bundle_dir: str | os.PathLike, rel: str) -> Path:
    """The absolute path of ``rel`` inside ``bundle_dir``; BundleError if it could escape the bundle."""
    root = Path(bundle_dir).resolve()
    parts = PurePosixPath(rel.replace("\\", "/")).parts
    if (not rel or PurePosixPath(rel).is_absolute() or PureWindowsPath(rel).is_absolute()
            or PureWindowsPath(rel).drive or ".." in parts):
        raise BundleError(f"file path {rel!r} in the manifest must be relative to the bundle and stay "
                          "inside it (no absolute paths, no '..'); re-export the bundle")
    full = (root / rel).resolve()
    if not full.is_relative_to(root):
        raise BundleError(f"file path {rel!r} resolves to {full}, outside the bundle {root} "
                          "(a symlink?); bundles must be self-contained")
    return full


# -- read / write ------------------------------------------------------------------------------------


def read_manifest(bundle_dir: str | os.PathLike, *, verify: bool = True) -> Manifest:
    """Read and validate ``<bundle_dir>/manifest.json``.

    Args:
        bundle_dir: the bundle directory.
        verify: also check that every file exists inside the bundle and matches its sha256.

    Raises:
        BundleError: missing or malformed manifest, unknown version, a path escaping the bundle, a
            missing file or a sha256 mismatch. The message names the field or file.

    Example:
        >>> m = read_manifest("out/bundle")  # doctest: +SKIP
        >>> m.names
        ['w0.25', 'w0.50', 'w1.00']
    """
    root = Path(bundle_dir)
    mf = root / MANIFEST_NAME
    if not root.is_dir():
        raise BundleError(f"bundle directory {str(root)!r} does not exist; pass the directory "
                          "export.bundle(...) wrote")
    if not mf.is_file():
        raise BundleError(f"{root} has no {MANIFEST_NAME}; is it a slimkit bundle (made by export.bundle)?")
    try:
        data = json.loads(mf.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{mf} is not valid JSON ({e}); re-export the bundle") from None
    manifest = Manifest.from_dict(data, where=str(mf))
    files = [(f"variant {v.name!r}", kind, f.path, f.sha256)
             for v in manifest.variants + manifest.twins for kind, f in v.files.items()]
    if manifest.weights is not None:
        files.insert(0, ("the bundle", "shared weights", manifest.weights.path, manifest.weights.sha256))
    checked: set[tuple[str, str]] = set()  # the weights file is listed by every variant; hash it once
    for owner, kind, rel, sha in files:
        full = resolve_file(root, rel)
        if not verify or (rel, sha) in checked:
            continue
        if not full.is_file():
            raise BundleError(f"{owner}: {kind} file {rel!r} is missing from {root}; re-export the bundle "
                              "or copy the whole directory")
        actual = sha256_file(full)
        if actual != sha:
            raise BundleError(
                f"{owner}: {kind} file {rel!r} has sha256 {actual}, but the manifest "
                f"says {sha}; the file was modified or corrupted: re-export the bundle"
            )
        checked.add((rel, sha))
    return manifest


def write_manifest(bundle_dir: str | os.PathLike, manifest: Manifest) -> Path:
    """Write ``manifest.json`` atomically (a temp file in the same dir, then ``os.replace``)."""
    root = Path(bundle_dir)
    text = json.dumps(manifest.to_dict(), indent=2, sort_keys=False) + "\n"
    Manifest.from_dict(json.loads(text), where="manifest to write")  # never write what we cannot read
    return atomic_write_text(root / MANIFEST_NAME, text)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` through a synced temporary file in the same folder, then ``os.replace``:
    a reader, or a process stopped half-way, never sees half a file, and a failed write leaves none."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def update_latency(bundle_dir: str | os.PathLike, key: str,
                   measurements: Mapping[str, Mapping[int, Mapping[str, float]]], *,
                   threads: int | None = None) -> Manifest:
    """Merge latency measurements into a bundle's manifest and write it back atomically.

    Args:
        bundle_dir: the bundle directory.
        key: ``"<backend>/<device>"``, e.g. ``"onnxruntime/cpu"``.
        measurements: ``{variant: {batch: {"p50_ms": .., "p95_ms": .., ["repeats": ..]}}}``;
            batches measured earlier under ``key`` and not given here are kept.
        threads: the intra-op thread count used, recorded alongside.

    Returns:
        The updated manifest.
    """
    if not isinstance(key, str) or key.count("/") != 1:
        raise ConfigError(f"latency key must look like '<backend>/<device>', got {key!r}")
    manifest = read_manifest(bundle_dir, verify=False)
    for name, per_batch in measurements.items():
        entry = manifest.variant(name)
        rec = entry.latency.setdefault(key, {"batch": {}})
        batches = rec.setdefault("batch", {})
        for batch, m in per_batch.items():
            if "p50_ms" not in m or "p95_ms" not in m:
                raise ConfigError(f"latency for {name!r} batch {batch} needs p50_ms and p95_ms, got {dict(m)}")
            batches[str(int(batch))] = {k: float(v) if k.endswith("_ms") else v for k, v in m.items()}
        if threads is not None:
            rec["threads"] = threads
        rec["measured_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    write_manifest(bundle_dir, manifest)
    return manifest
