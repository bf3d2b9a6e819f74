"""The TensorRT backend: a variant's serialized engine (plan) run with ``execute_async_v3``.

Chosen with ``runtime.load(bundle, backend="tensorrt")``; imported only then. It loads the plan
built for the running TensorRT version and GPU compute capability (file kind
``"tensorrt/<version>/sm<cc>"``, written by ``slimkit export --tensorrt`` / ``export.add_engines``),
because plans do not carry across either.

Per call: ``set_input_shape`` for the batch, ``set_tensor_address`` for every I/O tensor, host-to-device
copy, ``execute_async_v3`` on the backend's own CUDA stream (never the default stream, which TensorRT
documents as adding synchronisations), device-to-host copy, stream sync. Device buffers are allocated
once for ``max_batch`` from the engine's optimisation profile.

Buffers use cuda-python (``cuda.bindings.runtime``), not torch: the runtime must deploy on a box
without torch (DESIGN.md), and cuda-python is NVIDIA's own thin binding that TensorRT's Python samples
use; it is part of the ``tensorrt`` extra. An execution context is not thread safe, so calls are
serialised with a lock (one context and stream per variant).
"""

from __future__ import annotations

import os
import threading
from typing import Any, ClassVar

import numpy as np

from .errors import BundleError, ConfigError, InputError, MissingExtraError
from .manifest import FileEntry, VariantEntry, tensorrt_key

__all__ = ["TensorRTBackend", "compute_capability"]

_INSTALL = ('pip install --extra-index-url https://pypi.nvidia.com "tensorrt-cu12>=10" cuda-python '
            "(TensorRT's libraries come from NVIDIA's index, not PyPI)")


def _cudart() -> Any:
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python layout
        except ImportError as e:
            raise MissingExtraError(f"the TensorRT backend needs cuda-python: {_INSTALL}") from e
    return cudart


def _trt() -> Any:
    try:
        import tensorrt as trt
    except ImportError as e:
        raise MissingExtraError(f"the TensorRT backend needs TensorRT 10 or 11 ({e}): {_INSTALL}") from e
    return trt


def _call(result: Any) -> Any:
    """Unpack cuda-python's ``(err, value...)`` tuples, raising on an error code."""
    parts: tuple[Any, ...] = result if isinstance(result, tuple) else (result,)
    err, *rest = parts
    if int(getattr(err, "value", err)) != 0:  # cudaError_t is an enum; 0 is cudaSuccess
        raise ConfigError(f"CUDA runtime error {err}; check the driver and that a GPU is visible")
    return rest[0] if len(rest) == 1 else rest or None


def compute_capability(device: int = 0) -> tuple[int, int]:
    """``(major, minor)`` of CUDA device ``device``, e.g. ``(8, 9)`` for an L4."""
    cudart = _cudart()
    count = _call(cudart.cudaGetDeviceCount())
    if count <= device:
        raise ConfigError(f"CUDA device {device} asked for, but {count} CUDA devices are visible")
    props = _call(cudart.cudaGetDeviceProperties(device))
    return int(props.major), int(props.minor)


class TensorRTBackend:
    """One TensorRT engine with its execution context, stream and device buffers.

    Args:
        path: the ``.plan`` file (built for this TensorRT and GPU).
        device: CUDA device index.
        threads, providers: accepted for ``runtime.load`` symmetry; must be ``None``.
    """

    name: ClassVar[str] = "tensorrt"
    file_kind: ClassVar[str] = "tensorrt"  # set to "tensorrt/<version>/sm<cc>" by check_available()
    checks_inputs: ClassVar[bool] = False

    @classmethod
    def check_available(cls) -> None:
        """Import TensorRT and cuda-python, and key ``file_kind`` to this TensorRT and GPU."""
        trt = _trt()
        cls.file_kind = tensorrt_key(trt.__version__, compute_capability())

    @classmethod
    def pick_file(cls, variant: VariantEntry) -> FileEntry | None:
        """The plan for the running TensorRT version and GPU (keyed by :meth:`check_available`, which
        ``get_backend`` always calls first); BundleError naming what exists if none."""
        key = cls.file_kind
        if key in variant.files:
            return variant.files[key]
        have = sorted(k for k in variant.files if k.startswith("tensorrt/"))
        raise BundleError(f"variant {variant.name!r} has no TensorRT engine for this machine ({key}); it has "
                          f"{have or 'none'}. Engines do not carry across TensorRT versions or GPUs: build "
                          "them here with `slimkit export BUNDLE --tensorrt`")

    def __init__(self, path: str | os.PathLike, *, device: int = 0, threads: Any = None, providers: Any = None):
        if threads is not None or providers is not None:
            raise ConfigError("threads= and providers= apply to the onnxruntime backend; the TensorRT backend "
                              "takes device= (a CUDA device index)")
        trt, cudart = _trt(), _cudart()
        _call(cudart.cudaSetDevice(device))
        self._trt, self._cudart = trt, cudart
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        with open(path, "rb") as f:
            self.engine = self._runtime.deserialize_cuda_engine(f.read())
        if self.engine is None:
            raise BundleError(f"TensorRT {trt.__version__} could not deserialize {os.fspath(path)!r}: it was built "
                              "by another TensorRT version or for another GPU; rebuild it here")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if len(inputs) != 1:
            raise BundleError(f"{os.fspath(path)!r} has inputs {inputs}; slimkit engines serve single-input models")
        self.input_name = inputs[0]
        self.output_names = [n for n in names if n not in inputs]
        self._dtypes = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
        shape = list(self.engine.get_tensor_shape(self.input_name))
        self.max_batch = shape[0] if shape[0] >= 0 else int(self.engine.get_tensor_profile_shape(self.input_name, 0)[2][0])
        self._stream = _call(cudart.cudaStreamCreate())
        self._buffers: dict[str, int] = {}
        # size each buffer for max_batch: set the largest input shape, then read every output's shape
        self.context.set_input_shape(self.input_name, [self.max_batch, *shape[1:]])
        for n in names:
            nbytes = int(np.prod(list(self.context.get_tensor_shape(n)))) * self._dtypes[n].itemsize
            self._buffers[n] = _call(cudart.cudaMalloc(max(nbytes, 1)))
            self.context.set_tensor_address(n, int(self._buffers[n]))
        self.path = os.fspath(path)
        self.device = "cuda"
        self._lock = threading.Lock()

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        """All outputs for ``x`` (thread safe: calls are serialised)."""
        cudart = self._cudart
        if not isinstance(x, np.ndarray) or x.dtype != self._dtypes[self.input_name]:
            raise InputError(f"expected a numpy array of {self._dtypes[self.input_name]}, got "
                             f"{getattr(x, 'dtype', type(x).__name__)}")
        if not 1 <= x.shape[0] <= self.max_batch:
            raise InputError(f"batch {x.shape[0]} is outside this engine's profile 1..{self.max_batch}; "
                             "split the batch or rebuild with a larger max_batch")
        x = np.ascontiguousarray(x)
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        with self._lock:
            if not self.context.set_input_shape(self.input_name, x.shape):
                raise InputError(f"shape {x.shape} does not fit the engine's input {self.input_name!r}")
            _call(cudart.cudaMemcpyAsync(self._buffers[self.input_name], x.ctypes.data, x.nbytes, h2d,
                                         self._stream))
            if not self.context.execute_async_v3(int(self._stream)):
                raise ConfigError(f"TensorRT failed to run {self.path!r} (see its log)")
            outs = []
            for n in self.output_names:
                out = np.empty(list(self.context.get_tensor_shape(n)), dtype=self._dtypes[n])
                _call(cudart.cudaMemcpyAsync(out.ctypes.data, self._buffers[n], out.nbytes, d2h, self._stream))
                outs.append(out)
            _call(cudart.cudaStreamSynchronize(self._stream))
        return outs

    def __del__(self):
        cudart = getattr(self, "_cudart", None)
        if cudart is None:
            return
        for ptr in getattr(self, "_buffers", {}).values():
            cudart.cudaFree(ptr)
        if getattr(self, "_stream", None) is not None:
            cudart.cudaStreamDestroy(self._stream)

    def __repr__(self) -> str:
        return f"TensorRTBackend({self.path!r}, max_batch={self.max_batch})"
