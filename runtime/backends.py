"""Inference backends: one object per (variant file, backend) that runs a numpy array.

A backend is deliberately small so that a TensorRT backend can sit beside the ONNX Runtime one:

* ``name`` (class attribute): the backend's name in ``runtime.load(..., backend=name)`` and in
  latency keys (``"<name>/<device>"``).
* ``file_kind`` (class attribute): which entry of a variant's ``files`` it loads (``"onnx"``).
* ``device``: a short device string, e.g. ``"cpu"`` or ``"cuda"``.
* ``run(x) -> list[np.ndarray]``: all outputs for one input batch (an array; ``{input name: array}``
  for a model with several inputs); safe to call from many threads.
* ``input_names`` (optional): the model's inputs in order (a backend without it serves one input).
* ``checks_inputs`` (class attribute): True when ``run`` itself rejects a wrong dtype, rank or fixed
  dim (ONNX Runtime does, in C++); the engine then checks only after a failure, to word the error.
* ``feed_call`` (optional): ``(fn, output_names, input_name)`` with
  ``fn(output_names, {input_name: x}, None) == run(x)``, letting the engine skip a Python call per
  request.
* ``check_available()`` (optional classmethod): raise :class:`MissingExtraError` when the backend's
  library is absent; called by :func:`get_backend`, so the error comes before any file is opened.
* ``pick_file(variant)`` (optional classmethod): the :class:`FileEntry` to load, with an error that
  says what exists when this machine's file is missing (TensorRT plans are keyed by version and GPU).
* ``open_shared(bundle_dir, manifest, **options)`` (optional classmethod): one backend per variant, all
  reading one copy of the weights (``runtime.load(dir, share_weights=True)``); backends without it
  refuse that mode. ``share_weights_default`` (class attribute, default False): the mode
  ``share_weights=None`` picks, the faster one on that backend.

Backends: ``"onnxruntime"`` (here), ``"torch"`` (:mod:`.backends_torch`, ``torch.export`` programs on
CPU or CUDA, for GPUs without TensorRT) and ``"tensorrt"`` (:mod:`.backends_tensorrt`). The last two
are imported only when chosen, so ``import slimkit.runtime`` never loads torch or TensorRT.
"""

from __future__ import annotations

import importlib
import inspect
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Protocol

import numpy as np

from .errors import BundleError, ConfigError
from .manifest import FileEntry, Manifest, VariantEntry, resolve_file

__all__ = ["Backend", "OnnxRuntimeBackend", "BACKENDS", "get_backend", "open_backends", "session_options"]

# provider -> the device string used in latency keys
_DEVICES = {
    "CPUExecutionProvider": "cpu",
    "CUDAExecutionProvider": "cuda",
    "TensorrtExecutionProvider": "tensorrt",
    "ROCMExecutionProvider": "rocm",
    "CoreMLExecutionProvider": "coreml",
    "DmlExecutionProvider": "dml",
    "OpenVINOExecutionProvider": "openvino",
}

Provider = str | tuple[str, dict[str, Any]]

# onnxruntime graph optimisations that compute a new tensor from initializers (in_place turns them off)
_COPYING_OPTIMIZERS = ("ConstantFolding", "ConvBNFusion", "ConvAddFusion", "ConvMulFusion", "MatMulScaleFusion",
                       "NchwcTransformer")

_ORT_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16,
              "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int8)": np.int8,
              "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_}


class Backend(Protocol):
    """What the engine needs from a backend."""

    name: ClassVar[str]
    file_kind: ClassVar[str]
    checks_inputs: ClassVar[bool]
    device: str

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        """All outputs of the model for input ``x``."""
        ...


def _provider_name(p: object) -> str:
    if isinstance(p, str):
        return p
    if isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) and isinstance(p[1], dict):
        return p[0]
    raise ConfigError(f"a provider must be a name or a (name, options) pair, got {p!r} "
                      "(e.g. 'CPUExecutionProvider' or ('CUDAExecutionProvider', {'device_id': 0}))")



def session_options(threads: int | None = None, *, spin: bool = False):
    """The ``SessionOptions`` every slimkit ONNX Runtime session uses (benchmarks' baselines too)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads is not None:
        opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # A bundle holds one session per variant, each with its own intra-op pool. Spinning pools fight
    # each other (measured: alternating variants cost 1.58x staying on one with spinning, 1.06x
    # without; bench/sortednet/RESULTS.md), so idle workers sleep unless the caller opts in.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    return opts

class OnnxRuntimeBackend:
    """One ONNX Runtime ``InferenceSession`` with latency-friendly options.

    Args:
        path: the ``.onnx`` file.
        threads: intra-op threads (``None``: ONNX Runtime's default, one per core; 1 is best for tiny
            models served from many threads).
        providers: execution providers in priority order; default ``["CPUExecutionProvider"]``. The
            session must actually run on the first one, otherwise :class:`ConfigError` is raised
            (ONNX Runtime would silently fall back to CPU).
        spin: let idle intra-op workers spin (ONNX Runtime's default). Off by default, because the
            sessions of a bundle's variants would otherwise compete for the cores.
        initializers: arrays the session uses in place of the file's initializers of those names (no
            copy; names the graph lacks are ignored). :meth:`open_shared` passes views of one buffer.
        in_place: keep every initializer as it is: no pre-packing, and none of the graph optimisations
            that compute new tensors from them (constant folding, folding BatchNorm or a scale into a
            convolution), so that ``initializers`` stay the only copy. Slower; for ``open_shared``.
        shared_arena: take activation memory from one CPU arena for the whole process instead of one
            per session (``open_shared`` uses it: sessions of a bundle run one at a time per thread, and
            separate arenas each grow to their variant's largest batch).

    Example:
        >>> be = OnnxRuntimeBackend("out/bundle/w1.00.onnx", threads=1)  # doctest: +SKIP
        >>> be.run(np.zeros((1, 40), np.float32))[0].shape
        (1, 10)
    """

    name: ClassVar[str] = "onnxruntime"
    file_kind: ClassVar[str] = "onnx"
    checks_inputs: ClassVar[bool] = True

    def __init__(self, path: str | os.PathLike, *, threads: int | None = None,
                 providers: Sequence[Provider] | str | None = None, spin: bool = False,
                 initializers: Mapping[str, np.ndarray] | None = None, in_place: bool = False,
                 shared_arena: bool = False):
        import onnxruntime as ort

        if providers is None:
            providers = ["CPUExecutionProvider"]
        elif isinstance(providers, (str, tuple)):
            providers = [providers]
        providers = list(providers)
        if not providers:
            raise ConfigError("providers is empty; pass e.g. ['CPUExecutionProvider']")
        wanted = _provider_name(providers[0])
        for p in providers[1:]:
            _provider_name(p)
        available = ort.get_available_providers()
        if wanted not in available:
            raise ConfigError(f"execution provider {wanted!r} is not available in this onnxruntime "
                              f"build (available: {available}); install the matching onnxruntime package "
                              "or pass providers=['CPUExecutionProvider']")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ConfigError(f"threads must be a positive int or None, got {threads!r}")

        opts = session_options(threads, spin=spin)
        extra: dict[str, Any] = {}
        if initializers:  # onnxruntime warns once per overridable initializer, which is what they are for
            opts.log_severity_level = 3
        if shared_arena:
            _register_shared_arena()
            opts.add_session_config_entry("session.use_env_allocators", "1")
        if in_place:
            opts.add_session_config_entry("session.disable_prepacking", "1")
            extra["disabled_optimizers"] = list(_COPYING_OPTIMIZERS)
        # the session reads these arrays in place for as long as it lives, so it keeps a reference
        self._pinned = [ort.OrtValue.ortvalue_from_numpy(a) for a in (initializers or {}).values()]
        for name, value in zip(initializers or {}, self._pinned, strict=True):
            opts.add_initializer(name, value)
        try:
            sess = ort.InferenceSession(os.fspath(path), sess_options=opts, providers=providers, **extra)
        except Exception as e:  # onnxruntime raises its own (non-slimkit) exception types
            raise BundleError(f"onnxruntime could not load {os.fspath(path)!r}: {e}") from e
        got = sess.get_providers()[0]
        if got != wanted:
            raise ConfigError(f"asked for execution provider {wanted!r} but the session runs on {got!r} "
                              "(it failed to initialise); check the driver/library install or pass "
                              "providers=['CPUExecutionProvider']")
        inputs = sess.get_inputs()
        self.path = os.fspath(path)
        self.session = sess
        self.provider = got
        self.device = _DEVICES.get(got, got.removesuffix("ExecutionProvider").lower())
        self.threads = threads
        self.input_name: str = inputs[0].name
        self.input_names: list[str] = [i.name for i in inputs]
        self.output_names: list[str] = [o.name for o in sess.get_outputs()]
        self.feed_call = (self._fast_run(sess, inputs), self.output_names, self.input_name)

    def run(self, x: np.ndarray | dict[str, np.ndarray]) -> list[np.ndarray]:
        """All outputs for ``x``: an array (a single-input model) or ``{input name: array}`` (thread safe:
        ONNX Runtime sessions allow concurrent ``run``)."""
        return self.session.run(self.output_names, x if isinstance(x, dict) else {self.input_name: x})

    def _fast_run(self, sess: Any, metas: list[Any]) -> Any:
        """The fastest correct ``run(output_names, feed, run_options)`` of ``sess``.

        ``InferenceSession.run`` (not ``run_with_ort_values``, ~50 us slower in ORT 1.32) is a Python
        wrapper that re-checks the feed's names on every call (~0.7 us, 15% of a tiny model's run)
        before calling its C++ binding ``sess._sess.run``, which validates dtype and shape itself. The
        binding is private, so it is used only after a warm-up call shows that it answers exactly like
        the public method; otherwise the public method is used.
        """
        binding = getattr(getattr(sess, "_sess", None), "run", None)
        dtypes = [_ORT_TYPES.get(m.type) for m in metas]
        if binding is None or None in dtypes:
            return sess.run
        feed = {m.name: np.zeros([d if isinstance(d, int) else 1 for d in m.shape], dtype=dtype)
                for m, dtype in zip(metas, dtypes, strict=True)}
        try:
            want = sess.run(self.output_names, feed)
        except Exception:  # this probe does not suit the model (e.g. too short); stay public
            return sess.run
        try:
            got = binding(self.output_names, feed, None)
            same = len(got) == len(want) and all(np.array_equal(a, b, equal_nan=True) for a, b in zip(got, want, strict=False))
        except Exception:
            same = False
        return binding if same else sess.run

    def __repr__(self) -> str:
        return f"OnnxRuntimeBackend({self.path!r}, provider={self.provider!r}, threads={self.threads})"

    @classmethod
    def open_shared(cls, bundle_dir: str | os.PathLike, manifest: Manifest, **options: Any) -> list[Backend]:
        """One session per variant, all reading the bundle's weights file from one buffer in memory.

        Each variant runs its ``"onnx_shared"`` graph, whose shared tensors are overridable initializers
        given as views of that buffer: onnxruntime neither copies, folds nor pre-packs them, so the
        weights are resident once (bench/shared_weights/RESULTS.md measures the memory and the cost).
        A variant without one runs its usual graph ``in_place`` (see the class). All sessions take
        activation memory from one arena (``shared_arena``).
        A bundle without a weights file has nothing to share: it loads as usual, with a warning.
        """
        from .shared_weights import read_weights, tensor_views

        if manifest.weights is None:
            warnings.warn("this bundle stores no shared weights (its variants share no tensors, or it was "
                          "exported before slimkit wrote them); loading one copy per variant", stacklevel=4)
            return [cls(resolve_file(bundle_dir, _file_for(cls, v).path), **options) for v in manifest.variants]
        views = tensor_views(read_weights(bundle_dir, manifest.weights), manifest.weights)
        backends: list[Backend] = []
        for v in manifest.variants:
            split = v.files.get("onnx_shared")  # absent: no layer worth splitting, the usual graph in place
            f = split or _file_for(cls, v)
            backends.append(cls(resolve_file(bundle_dir, f.path), initializers=views, shared_arena=True,
                                in_place="weights" in v.files and split is None, **options))
        return backends


_ARENA: list[bool] = []  # the process-wide arena is registered once (onnxruntime keeps it for the process)


def _register_shared_arena() -> None:
    import onnxruntime as ort

    if not _ARENA:
        info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
        ort.create_and_register_allocator(info, None)
        _ARENA.append(True)


BACKENDS: dict[str, type] = {"onnxruntime": OnnxRuntimeBackend}
# imported on first use: each pulls a heavy optional library (torch, tensorrt) when constructed
_LAZY = {"torch": (".backends_torch", "TorchBackend"), "tensorrt": (".backends_tensorrt", "TensorRTBackend")}


def get_backend(name: str) -> type:
    """The backend class registered under ``name``; ConfigError listing the known ones otherwise."""
    if isinstance(name, str) and name not in BACKENDS and name in _LAZY:
        module, attr = _LAZY[name]
        BACKENDS[name] = getattr(importlib.import_module(module, __package__), attr)
    try:
        cls = BACKENDS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown backend {name!r}; available: {sorted(BACKENDS.keys() | _LAZY.keys())}") from None
    check = getattr(cls, "check_available", None)
    if check is not None:
        check()  # MissingExtraError saying what to install, before any file is opened
    return cls


def _file_for(cls: Any, v: VariantEntry) -> FileEntry:
    pick = getattr(cls, "pick_file", None)
    f = pick(v) if pick is not None else v.files.get(cls.file_kind)
    if f is None:
        raise BundleError(f"variant {v.name!r} has no {cls.file_kind!r} file (has {sorted(v.files)}); "
                          f"the {cls.name} backend needs one: re-export the bundle with it")
    return f


def open_backends(bundle_dir: str | os.PathLike, manifest: Manifest, backend: str = "onnxruntime", *,
                  share_weights: bool | None = None, **options: Any) -> list[Backend]:
    """One loaded backend per variant of ``manifest`` (in its order), from the files in ``bundle_dir``.

    Args:
        bundle_dir: the bundle directory.
        manifest: its manifest, e.g. ``read_manifest(dir).with_precision("int8")``.
        backend: a name from :data:`BACKENDS` (``"onnxruntime"``, ``"torch"``, ``"tensorrt"``).
        share_weights: every variant reads one copy of the weights in memory (the backend's
            ``open_shared``); False: each variant loads its own; None: the backend's
            ``share_weights_default``.
        options: passed to the backend class (``threads=``, ``providers=``, ``device=`` ...).

    Raises:
        BundleError: a variant lacks the file this backend loads, or its input name disagrees.
        ConfigError: unknown backend, an option it does not take, or ``share_weights`` on a backend
            that cannot share.
    """
    cls = get_backend(backend)
    try:
        inspect.signature(cls).bind("model", **options)
    except TypeError as e:
        raise ConfigError(f"the {backend} backend does not take these options {sorted(options)} ({e}); "
                          f"see help({cls.__name__})") from None
    if share_weights is None:
        share_weights = getattr(cls, "share_weights_default", False)
    if share_weights:
        opener = getattr(cls, "open_shared", None)
        if opener is None:
            raise ConfigError(f"the {backend} backend cannot serve every variant from one copy of the weights "
                              "(each engine holds its own); load without share_weights=True")
        opened = opener(bundle_dir, manifest, **options)
    else:
        opened = [cls(resolve_file(bundle_dir, _file_for(cls, v).path), **options) for v in manifest.variants]
    backends = []
    want = [s.name for s in manifest.inputs]
    for v, be in zip(manifest.variants, opened, strict=True):
        got = getattr(be, "input_names", [getattr(be, "input_name", want[0])])
        if got != want:
            raise BundleError(f"variant {v.name!r}: model inputs are named {got} but the manifest says {want}; "
                              "re-export the bundle")
        backends.append(be)
    return backends
