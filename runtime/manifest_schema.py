"""The bundle manifest's records and their validation (the schema itself is described in
:mod:`slimkit.runtime.manifest`, which also reads and writes it; import from there)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import BundleError, ConfigError, VariantError

FORMAT = "slimkit-bundle"
VERSION = 1
SUPPORTED_VERSIONS = (1,)
MANIFEST_NAME = "manifest.json"

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_RANGE_RE = re.compile(r"^([a-z0-9]+)\[((?:[0-9]+(?:,[0-9]+)*)?)\]@([0-9]+)$")
PRECISIONS = ("fp32", "fp16", "int8")


def tensorrt_key(trt_version: str, compute_capability: tuple[int, int]) -> str:
    """The file kind of a TensorRT plan: ``tensorrt_key("10.16.1.11", (8, 9)) == "tensorrt/10.16.1.11/sm89"``."""
    major, minor = compute_capability
    return f"tensorrt/{trt_version}/sm{int(major)}{int(minor)}"


def check_variant_name(name: object) -> str:
    """Return ``name`` if it is a safe variant name (used as a file stem), else raise ConfigError."""
    if not isinstance(name, str) or not _NAME_RE.match(name) or name.endswith("."):
        raise ConfigError(
            f"variant name {name!r} is not safe as a file name: use 1-64 characters from "
            "A-Z a-z 0-9 . _ - starting with a letter or digit (e.g. 'w0.50')"
        )
    return name



# -- dataclasses ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorSpec:
    """Name, numpy dtype string and shape (``None`` for dynamic dims) of one model input or output."""

    name: str
    dtype: str
    shape: tuple[int | None, ...]
    dim_names: tuple[str | None, ...] | None = None
    example_shape: tuple[int, ...] | None = None

    def describe(self) -> str:
        """Human form, e.g. ``float32 of shape [batch, 1, 40]``."""
        names = self.dim_names or (None,) * len(self.shape)
        dims = [str(d) if d is not None else (n or "?") for d, n in zip(self.shape, names, strict=False)]
        return f"{self.dtype} of shape [{', '.join(dims)}]"

    def to_dict(self) -> dict[str, Any]:
        """The spec as manifest JSON (optional keys only when set)."""
        d: dict[str, Any] = {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}
        if self.dim_names is not None:
            d["dim_names"] = list(self.dim_names)
        if self.example_shape is not None:
            d["example_shape"] = list(self.example_shape)
        return d


@dataclass(frozen=True)
class FileEntry:
    """One artifact of a variant: a path relative to the bundle dir and its sha256."""

    path: str
    sha256: str
    meta: dict[str, Any] | None = None  # e.g. a TensorRT plan's precision and batch profile

    def to_dict(self) -> dict[str, Any]:
        """The entry as manifest JSON."""
        d: dict[str, Any] = {"path": self.path, "sha256": self.sha256}
        if self.meta:
            d["meta"] = self.meta
        return d


@dataclass(frozen=True)
class TensorRange:
    """One tensor stored in a bundle's weights file: ``shape`` x ``dtype`` bytes from ``offset`` on,
    written in the manifest as ``"float32[16,8,3]@4096"`` (one short line per tensor)."""

    offset: int
    shape: tuple[int, ...]
    dtype: str

    @property
    def nbytes(self) -> int:
        """The tensor's size in bytes."""
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize

    def to_str(self) -> str:
        """The manifest's form, ``"float32[16,8,3]@4096"``."""
        return f"{self.dtype}[{','.join(map(str, self.shape))}]@{self.offset}"


@dataclass(frozen=True)
class WeightsEntry:
    """The one weights file whose ranges every variant of a shared bundle reads (``"weights"``)."""

    path: str
    sha256: str
    bytes: int
    tensors: dict[str, TensorRange]

    def to_dict(self) -> dict[str, Any]:
        """The manifest's ``"weights"`` record."""
        return {"path": self.path, "sha256": self.sha256, "bytes": self.bytes,
                "tensors": {k: t.to_str() for k, t in self.tensors.items()}}


@dataclass
class VariantEntry:
    """One variant's record in the manifest."""

    name: str
    params: int
    macs: int
    metrics: dict[str, float] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    files: dict[str, FileEntry] = field(default_factory=dict)
    latency: dict[str, Any] = field(default_factory=dict)
    precision: str = "fp32"
    base: str | None = None  # a twin's FP32 variant

    def to_dict(self) -> dict[str, Any]:
        """The variant as manifest JSON (precision and base only on twins)."""
        d = {"name": self.name, "params": self.params, "macs": self.macs, "metrics": self.metrics,
             "config": self.config, "files": {k: f.to_dict() for k, f in self.files.items()},
             "latency": self.latency}
        if self.precision != "fp32" or self.base is not None:
            d["precision"] = self.precision
            d["base"] = self.base
        return d


@dataclass
class Manifest:
    """The parsed ``manifest.json``; ``variants`` are sorted cheapest first (by MACs, then params)."""

    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    variants: list[VariantEntry]
    task: str = "classification"
    method: str = ""
    source: dict[str, Any] = field(default_factory=dict)
    format: str = FORMAT
    version: int = VERSION
    twins: list[VariantEntry] = field(default_factory=list)  # other-precision copies (see module doc)
    weights: WeightsEntry | None = None  # the shared weights file, when variants share tensors

    def __post_init__(self) -> None:
        self.variants = sorted(self.variants, key=lambda v: (v.macs, v.params))
        self.twins = sorted(self.twins, key=lambda v: (v.precision, v.macs, v.params))

    @property
    def names(self) -> list[str]:
        """The variants' names, cheapest first."""
        return [v.name for v in self.variants]

    @property
    def precisions(self) -> list[str]:
        """The precisions this bundle can serve, its variants' first (``["fp32", "int8"]``)."""
        found = [v.precision for v in self.variants + self.twins]
        return list(dict.fromkeys(found))

    def variant(self, name: str) -> VariantEntry:
        """The variant or twin called ``name``."""
        for v in self.variants + self.twins:
            if v.name == name:
                return v
        raise VariantError(f"no variant named {name!r}; this bundle has {self.names + [t.name for t in self.twins]}")

    def with_precision(self, precision: str) -> Manifest:
        """This manifest with ``variants`` replaced by the ones of ``precision`` (what an engine serves).

        Raises:
            ConfigError: the bundle holds no variant of that precision.
        """
        if precision == self.variants[0].precision:
            return self
        chosen = [t for t in self.twins if t.precision == precision]
        if not chosen:
            hint = (' (re-export with export.bundle(..., quantize="int8", calibration=val_loader))'
                    if precision == "int8" else "")
            raise ConfigError(f"this bundle has no {precision!r} variants; it holds {self.precisions}{hint}")
        rest = [v for v in self.variants + self.twins if v.precision != precision]
        return Manifest(self.inputs, self.outputs, chosen, self.task, self.method, self.source, self.format,
                        self.version, rest, self.weights)

    def to_dict(self) -> dict[str, Any]:
        """The whole manifest as JSON-ready data (what ``manifest.json`` holds)."""
        d = {"format": self.format, "version": self.version,
             "inputs": [s.to_dict() for s in self.inputs], "outputs": [s.to_dict() for s in self.outputs],
             "task": self.task, "method": self.method, "source": self.source,
             "variants": [v.to_dict() for v in self.variants]}
        if self.twins:
            d["twins"] = [v.to_dict() for v in self.twins]
        if self.weights is not None:
            d["weights"] = self.weights.to_dict()
        return d

    @classmethod
    def from_dict(cls, data: object, *, where: str = MANIFEST_NAME) -> Manifest:
        """Validate a decoded manifest and build it; raise :class:`BundleError` naming the bad field."""
        d = _obj(data, where)
        fmt = d.get("format")
        if fmt != FORMAT:
            raise BundleError(f"{where}: format is {fmt!r}, expected {FORMAT!r}; this is not a slimkit bundle")
        version = d.get("version")
        if isinstance(version, bool) or version not in SUPPORTED_VERSIONS:
            raise BundleError(
                f"{where}: bundle version {version!r} is not supported; this slimkit reads versions "
                f"{list(SUPPORTED_VERSIONS)}: upgrade slimkit or re-export the bundle with this version"
            )
        inputs = [_spec(s, f"{where}: inputs[{i}]") for i, s in enumerate(_list(d, "inputs", where))]
        outputs = [_spec(s, f"{where}: outputs[{i}]") for i, s in enumerate(_list(d, "outputs", where))]
        if not inputs or not outputs:
            raise BundleError(f"{where}: 'inputs' and 'outputs' must each list at least one tensor")
        raw_variants = _list(d, "variants", where)
        if not raw_variants:
            raise BundleError(f"{where}: 'variants' is empty; a bundle needs at least one variant")
        variants = [_variant(v, f"{where}: variants[{i}]") for i, v in enumerate(raw_variants)]
        twins = [_variant(v, f"{where}: twins[{i}]")
                 for i, v in enumerate(_typed(d, "twins", list, where, default=[]))]
        names = [v.name for v in variants + twins]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise BundleError(f"{where}: variant names must be unique, got duplicates {dupes}")
        if len({v.precision for v in variants}) > 1:
            raise BundleError(f"{where}: 'variants' mixes precisions; other precisions belong in 'twins'")
        for t in twins:
            if t.base not in names[:len(variants)] or t.precision == variants[0].precision:
                raise BundleError(f"{where}: twin {t.name!r} must name its variant in 'base' (one of "
                                  f"{names[:len(variants)]}) and have another precision, got base={t.base!r}, "
                                  f"precision={t.precision!r}")
        weights = _weights(d["weights"], f"{where}: weights") if "weights" in d else None
        for v in variants + twins:
            f = v.files.get("weights")
            if f is not None and (weights is None or (f.path, f.sha256) != (weights.path, weights.sha256)):
                raise BundleError(f"{where}: variant {v.name!r} lists weights file {f.path!r} that the bundle's "
                                  f"'weights' record ({weights.path if weights else None!r}) does not describe "
                                  "with the same sha256; re-export the bundle")
        return cls(inputs=inputs, outputs=outputs, variants=variants,
                   task=_typed(d, "task", str, where, default="classification"),
                   method=_typed(d, "method", str, where, default=""),
                   source=_typed(d, "source", dict, where, default={}),
                   format=FORMAT, version=version, twins=twins, weights=weights)


# -- field validation ------------------------------------------------------------------------------


def _obj(x: object, where: str) -> dict[str, Any]:
    if not isinstance(x, dict):
        raise BundleError(f"{where}: expected a JSON object, got {type(x).__name__}")
    return x


def _list(d: dict, key: str, where: str) -> list:
    if key not in d:
        raise BundleError(f"{where}: required field {key!r} is missing")
    if not isinstance(d[key], list):
        raise BundleError(f"{where}: field {key!r} must be a list, got {type(d[key]).__name__}")
    return d[key]


_MISSING = object()


def _typed(d: dict, key: str, typ: type | tuple[type, ...], where: str, default: Any = _MISSING) -> Any:
    if key not in d:
        if default is _MISSING:
            raise BundleError(f"{where}: required field {key!r} is missing")
        return default
    v = d[key]
    if isinstance(v, bool) and typ in (int, (int, float)) or not isinstance(v, typ):
        want = typ.__name__ if isinstance(typ, type) else " or ".join(t.__name__ for t in typ)
        raise BundleError(f"{where}: field {key!r} must be {want}, got {v!r}")
    return v


def _spec(x: object, where: str) -> TensorSpec:
    d = _obj(x, where)
    name = _typed(d, "name", str, where)
    dtype = _typed(d, "dtype", str, where)
    try:
        ok = np.dtype(dtype).name == dtype
    except TypeError:
        ok = False
    if not ok:
        raise BundleError(f"{where}: dtype {dtype!r} is not a numpy dtype name (e.g. 'float32', 'int64')")
    shape = _typed(d, "shape", list, where)
    for s in shape:
        if s is not None and (isinstance(s, bool) or not isinstance(s, int) or s < 0):
            raise BundleError(f"{where}: shape entries must be non-negative ints or null, got {shape}")
    dim_names = d.get("dim_names")
    if dim_names is not None:
        if (not isinstance(dim_names, list) or len(dim_names) != len(shape)
                or not all(n is None or isinstance(n, str) for n in dim_names)):
            raise BundleError(f"{where}: dim_names must list a string or null per dim of {shape}, got {dim_names!r}")
        dim_names = tuple(dim_names)
    example = d.get("example_shape")
    if example is not None:
        if (not isinstance(example, list) or len(example) != len(shape)
                or not all(isinstance(e, int) and not isinstance(e, bool) and e >= 0 for e in example)
                or any(s is not None and s != e for s, e in zip(shape, example, strict=False))):
            raise BundleError(f"{where}: example_shape must be a concrete shape matching {shape}, got {example!r}")
        example = tuple(example)
    return TensorSpec(name, dtype, tuple(shape), dim_names, example)


def _variant(x: object, where: str) -> VariantEntry:
    d = _obj(x, where)
    name = _typed(d, "name", str, where)
    try:
        check_variant_name(name)
    except ConfigError as e:
        raise BundleError(f"{where}: {e}") from None
    where = f"{where} ({name})"
    params = _typed(d, "params", int, where)
    macs = _typed(d, "macs", int, where)
    if params < 0 or macs < 0:
        raise BundleError(f"{where}: params and macs must be >= 0, got params={params}, macs={macs}")
    metrics = _typed(d, "metrics", dict, where, default={})
    config = _typed(d, "config", dict, where, default={})
    raw_files = _typed(d, "files", dict, where)
    if not raw_files:
        raise BundleError(f"{where}: 'files' is empty; each variant needs at least an 'onnx' file")
    files = {}
    for kind, f in raw_files.items():
        fd = _obj(f, f"{where} files.{kind}")
        path = _typed(fd, "path", str, f"{where} files.{kind}")
        sha = _typed(fd, "sha256", str, f"{where} files.{kind}")
        if not _SHA_RE.match(sha):
            raise BundleError(f"{where} files.{kind}: sha256 must be 64 lowercase hex digits, got {sha!r}")
        files[kind] = FileEntry(path, sha, _typed(fd, "meta", dict, f"{where} files.{kind}", default=None))
    latency = _typed(d, "latency", dict, where, default={})
    for key, rec in latency.items():
        _check_latency_record(rec, f"{where} latency[{key!r}]")
    precision = _typed(d, "precision", str, where, default="fp32")
    if precision not in PRECISIONS:
        raise BundleError(f"{where}: precision must be one of {PRECISIONS}, got {precision!r}")
    base = _typed(d, "base", (str, type(None)), where, default=None)
    return VariantEntry(name, params, macs, metrics, config, files, latency, precision, base)


def _weights(x: object, where: str) -> WeightsEntry:
    d = _obj(x, where)
    path, sha = _typed(d, "path", str, where), _typed(d, "sha256", str, where)
    if not _SHA_RE.match(sha):
        raise BundleError(f"{where}: sha256 must be 64 lowercase hex digits, got {sha!r}")
    size = _typed(d, "bytes", int, where)
    tensors = {}
    for name, t in _typed(d, "tensors", dict, where).items():
        at = f"{where}.tensors[{name!r}]"
        found = _RANGE_RE.match(t) if isinstance(t, str) else None
        try:
            ok = found is not None and np.dtype(found[1]).name == found[1]
        except TypeError:
            ok = False
        if not ok or found is None:
            raise BundleError(f"{at}: expected '<numpy dtype>[<dims>]@<byte offset>', e.g. 'float32[16,8]@4096', "
                              f"got {t!r}")
        shape = tuple(int(s) for s in found[2].split(",")) if found[2] else ()
        r = tensors[name] = TensorRange(int(found[3]), shape, found[1])
        if r.offset + r.nbytes > size:
            raise BundleError(f"{at}: bytes {r.offset}..{r.offset + r.nbytes} lie beyond the end of "
                              f"{path!r} ({size} bytes); re-export the bundle")
    return WeightsEntry(path, sha, size, tensors)


def _check_latency_record(rec: object, where: str) -> None:
    batches = _typed(_obj(rec, where), "batch", dict, where)
    for b, m in batches.items():
        if not b.isdigit():
            raise BundleError(f"{where}: batch keys must be batch sizes like \"1\", got {b!r}")
        md = _obj(m, f"{where} batch {b}")
        for k in ("p50_ms", "p95_ms"):
            _typed(md, k, (int, float), f"{where} batch {b}")
