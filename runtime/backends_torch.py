"""The torch backend: bundle variants saved as ``torch.export`` programs (``.pt2``), on CPU or CUDA.

For GPUs without TensorRT (and for checking a bundle on a CPU box that has torch). Chosen with
``runtime.load(bundle, backend="torch")``; this module is imported only then, so the rest of the
runtime never loads torch. The bundle must hold ``torch_export`` files
(``export.bundle(..., torch_export=True)``).

A ``.pt2`` file is a ``torch.export`` archive (graph as JSON, weights as tensors), loaded with
``torch.export.load``; it is the artifact PyTorch itself recommends for deployment without Python
model code (PyTorch docs, "torch.export").

One copy of the weights (``runtime.load(dir, backend="torch")``, the default on this backend; pass
``share_weights=False`` for a copy per variant): the programs are
loaded largest first, and every parameter or buffer of a smaller variant that equals a leading slice
``W[:a, :b]`` of one already loaded is replaced by that view (found from the data, as the exporter
finds them). BLAS reads such a sub-matrix in place through its leading dimension, so a linear layer
multiplies by it with no copy; layers whose kernels need contiguous weights copy the view on each call.

CUDA graphs (``cuda_graphs=True``, CUDA only): the first call at each batch size captures the
program into a ``torch.cuda.CUDAGraph`` with static input/output buffers; later calls at that size copy
the input in and replay, which removes the per-kernel launch cost that dominates small models. Up to
``max_graphs`` batch sizes are captured; other sizes run eagerly. Replays share buffers, so they are
serialised with a lock.
"""

from __future__ import annotations

import ctypes
import gc
import os
import threading
from typing import Any, ClassVar

import numpy as np

from .errors import BundleError, ConfigError, InputError, MissingExtraError

__all__ = ["TorchBackend"]


def _torch():
    try:
        import torch
    except ImportError as e:
        raise MissingExtraError('the torch backend needs PyTorch: pip install torch (or "slimkit" with its '
                                "default dependencies)") from e
    return torch


class TorchBackend:
    """One ``torch.export`` program run on ``device``.

    Args:
        path: the ``.pt2`` file.
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``; default ``"cuda"`` when available, else ``"cpu"``.
        threads: torch intra-op threads (``torch.set_num_threads`` is process-wide; ``None`` leaves it).
        providers: must be ``None`` (execution providers are an onnxruntime notion).
        cuda_graphs: capture and replay CUDA graphs per batch size (CUDA only).
        max_graphs: at most this many captured batch sizes.
        module: the program's module, already loaded from ``path`` (used by :meth:`open_shared`).

    Example:
        >>> eng = runtime.load("out/bundle", backend="torch")  # doctest: +SKIP
        >>> eng.run(x, budget=0.5)
    """

    name: ClassVar[str] = "torch"
    file_kind: ClassVar[str] = "torch_export"
    checks_inputs: ClassVar[bool] = False
    share_weights_default: ClassVar[bool] = True  # views cost no measurable time (bench/shared_weights/RESULTS.md)

    @classmethod
    def check_available(cls) -> None:
        """Raise MissingExtraError when torch cannot be imported here."""
        _torch()

    def __init__(self, path: str | os.PathLike, *, device: str | None = None, threads: int | None = None,
                 providers: Any = None, cuda_graphs: bool = False, max_graphs: int = 8, module: Any = None):
        torch = _torch()
        if providers is not None:
            raise ConfigError(f"providers={providers!r} applies to the onnxruntime backend; the torch backend "
                              "takes device= ('cpu' or 'cuda')")
        if threads is not None:
            if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
                raise ConfigError(f"threads must be a positive int or None, got {threads!r}")
            torch.set_num_threads(threads)
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError):
            raise ConfigError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} asked for, but torch sees no CUDA device "
                              f"(torch {torch.__version__}); pass device='cpu' or install a CUDA build of torch")
        if dev.type not in ("cpu", "cuda"):
            raise ConfigError(f"device must be 'cpu' or 'cuda', got {device!r}")
        if cuda_graphs and dev.type != "cuda":
            raise ConfigError("cuda_graphs=True needs device='cuda'")
        self.path = os.fspath(path)
        self.module = (module if module is not None else _load_program(path)).to(dev)
        self.device = "cuda" if dev.type == "cuda" else "cpu"
        self._dev = dev
        self._torch = torch
        self._graphs: dict[tuple, tuple] | None = {} if cuda_graphs else None  # shape -> (graph, x_static, outs)
        self._max_graphs = max_graphs
        self._lock = threading.Lock()

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        """All outputs for ``x`` as numpy arrays (thread safe)."""
        torch = self._torch
        if not isinstance(x, np.ndarray):
            raise InputError(f"expected a numpy.ndarray, got {type(x).__name__}")
        with torch.inference_mode():
            t = torch.from_numpy(np.ascontiguousarray(x)).to(self._dev, non_blocking=True)
            if self._graphs is not None:
                outs = self._replay(t)
            else:
                outs = self.module(t)
            outs = outs if isinstance(outs, (tuple, list)) else (outs,)
            return [o.detach().cpu().numpy() for o in outs]

    def _replay(self, t):
        torch = self._torch
        key = (tuple(t.shape), t.dtype)
        with self._lock:
            entry = self._graphs.get(key)
            if entry is None:
                if len(self._graphs) >= self._max_graphs:
                    return self.module(t)
                static = t.clone()
                side = torch.cuda.Stream(self._dev)
                side.wait_stream(torch.cuda.current_stream(self._dev))
                with torch.cuda.stream(side):  # warm up outside the graph, as the CUDA graphs docs ask
                    for _ in range(3):
                        self.module(static)
                torch.cuda.current_stream(self._dev).wait_stream(side)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    out = self.module(static)
                entry = self._graphs[key] = (graph, static, out)
            graph, static, out = entry
            static.copy_(t)
            graph.replay()
            out = out if isinstance(out, (tuple, list)) else (out,)
            return tuple(o.clone() for o in out)

    def __repr__(self) -> str:
        graphs = "" if self._graphs is None else f", cuda_graphs={len(self._graphs)} captured"
        return f"TorchBackend({self.path!r}, device={self.device!r}{graphs})"

    @classmethod
    def open_shared(cls, bundle_dir: str | os.PathLike, manifest: Any, **options: Any) -> list[TorchBackend]:
        """One backend per variant; a smaller variant's tensors are views of a larger one's (see the
        module docs). Programs load one at a time on the CPU, so at most one variant's own copy exists
        besides the shared tensors; on CUDA the shared tensors then move to the device once."""
        from .manifest import resolve_file
        from .shared_weights import SliceIndex

        torch = _torch()
        index, views, modules = SliceIndex(), [], {}
        roots: dict[tuple[str, str], Any] = {}
        for v in reversed(manifest.variants):  # largest first: its tensors become the roots
            f = v.files.get(cls.file_kind)
            if f is None:
                inputs = [s.name for s in manifest.inputs]
                raise BundleError(f"variant {v.name!r} has no {cls.file_kind!r} file (has {sorted(v.files)}); "
                                  + ("re-export with export.bundle(..., torch_export=True)" if len(inputs) == 1 else
                                     f"the torch backend serves single-input models and this one takes {inputs}: "
                                     "load it with the onnxruntime backend"))
            modules[v.name] = _load_program(resolve_file(bundle_dir, f.path))
            views += _alias(modules[v.name], v.name, index, roots)
        device = options.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            on_gpu = torch.device(device).type == "cuda" and torch.cuda.is_available()
        except (RuntimeError, TypeError):
            on_gpu = False  # the constructor below refuses the device with a message
        if on_gpu:  # move each shared tensor once, then point every user at it
            moved = {k: t.to(device) for k, t in roots.items()}
            for (variant, name), t in moved.items():
                _set_tensor(modules[variant], name, t)
            for variant, name, key, shape in views:
                _set_tensor(modules[variant], name, moved[key][tuple(slice(0, s) for s in shape)])
        del index, roots
        _release_freed_memory()
        return [cls(resolve_file(bundle_dir, v.files[cls.file_kind].path), module=modules[v.name], **options)
                for v in manifest.variants]


def _alias(module: Any, variant: str, index: Any, roots: dict) -> list[tuple[str, str, Any, tuple[int, ...]]]:
    """Point each tensor of ``module`` that is a leading slice of a root at a view of that root (its own
    copy is dropped); the others become roots. Returns ``(variant, name, root key, shape)`` per view."""
    views = []
    tensors = [*module.named_parameters(remove_duplicate=False), *module.named_buffers(remove_duplicate=False)]
    for name, t in sorted(tensors, key=lambda kv: -kv[1].nbytes):
        arr = _as_numpy(t)
        key = index.find(arr) if arr is not None else None
        if key is None:
            if arr is not None:
                index.add((variant, name), arr)
                roots[variant, name] = t.detach()
        else:
            views.append((variant, name, key, tuple(t.shape)))
            _set_tensor(module, name, roots[key][tuple(slice(0, s) for s in t.shape)])
    return views


def _release_freed_memory() -> None:
    """Give the heap pages of the dropped copies back to the OS. glibc keeps freed memory in its heap
    for reuse, so without this the process's resident size would not show the saving (measured: the
    BERT-style family of bench/shared_weights stayed at 1.19x its largest variant, 1.04x after)."""
    gc.collect()
    try:
        trim = getattr(ctypes.CDLL("libc.so.6"), "malloc_trim", None)
    except OSError:  # not glibc (macOS, musl): nothing to do
        return
    if trim is not None:
        trim(0)


def _load_program(path: str | os.PathLike) -> Any:
    torch = _torch()
    try:
        program = torch.export.load(os.fspath(path))
    except Exception as e:  # torch raises many types for a bad archive
        raise BundleError(f"torch.export.load could not read {os.fspath(path)!r}: {e}") from e
    return program.module()


def _as_numpy(t: Any) -> np.ndarray | None:
    """A numpy view of a CPU tensor's data (None for types numpy lacks, e.g. bfloat16)."""
    try:
        return t.detach().numpy()
    except (TypeError, RuntimeError):
        return None


def _set_tensor(module: Any, name: str, tensor: Any) -> None:
    """Make ``module``'s parameter or buffer ``name`` the tensor ``tensor`` (a view is kept a view)."""
    torch = _torch()
    owner_name, _, attr = name.rpartition(".")
    owner = module.get_submodule(owner_name) if owner_name else module
    is_param = isinstance(getattr(owner, attr), torch.nn.Parameter)
    setattr(owner, attr, torch.nn.Parameter(tensor, requires_grad=False) if is_param else tensor)
