"""Every way slimkit can run a family on this machine, each as ``{variant: numpy -> numpy}`` calls.

All calls take a numpy batch and return the first output as numpy, as a served request does, so every
backend is timed from the same interface (host to device, run, device to host). Copying the result to
the host waits for the device, so a returned call is a finished one.

| backend | what runs |
| --- | --- |
| ``onnxruntime/cpu`` | ``runtime.load(bundle)``: the parity reference |
| ``eager`` | the Family's own ``nn.Module`` on the device, under ``torch.inference_mode`` |
| ``torch.export`` | ``runtime.load(bundle, backend="torch", device=...)`` |
| ``torch.export+cuda_graphs`` | the same with ``cuda_graphs=True`` (CUDA only) |
| ``onnxruntime/cuda`` | ``runtime.load(bundle, providers=["CUDAExecutionProvider"])`` |
| ``tensorrt`` | ``export.add_engines(bundle)`` then ``runtime.load(bundle, backend="tensorrt")`` |

A backend that cannot run here is returned as a :class:`Skip` with the reason, never silently dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from slimkit import export, runtime

__all__ = ["Backend", "Skip", "open_each", "BACKENDS", "REFERENCE", "CUDA_ONLY"]

REFERENCE = "onnxruntime/cpu"
BACKENDS = (REFERENCE, "eager", "torch.export", "torch.export+cuda_graphs", "onnxruntime/cuda", "tensorrt")
CUDA_ONLY = ("torch.export+cuda_graphs", "onnxruntime/cuda", "tensorrt")
TRT_MAX_BATCH = 64

Call = Callable[[np.ndarray], np.ndarray]


@dataclass
class Backend:
    """One opened backend: a call per variant, the device it runs on and how it was opened."""

    name: str
    calls: dict[str, Call]
    device: str
    how: str
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Skip:
    """A backend that is not measured, and why."""

    name: str
    reason: str


def _engine_calls(engine: Any) -> dict[str, Call]:
    return {n: (lambda x, n=n: engine.run(x, variant=n)) for n in engine.names}


def _eager_calls(family: Any, device: str) -> dict[str, Call]:
    import torch

    dev = torch.device(device)
    calls = {}
    for v in family.variants:
        model = v.model.eval().to(dev)

        def call(x: np.ndarray, model=model) -> np.ndarray:
            with torch.inference_mode():
                return model(torch.from_numpy(x).to(dev)).cpu().numpy()

        calls[v.name] = call
    return calls


def _check_device(engine: Any, want: str) -> None:
    if engine.device != want:  # the house rule: the device asked for is the one running
        raise RuntimeError(f"asked for {want} but the engine runs on {engine.device!r} ({engine!r})")


def _ort_cuda(bundle: Path, device: str) -> Backend | Skip:
    import onnxruntime as ort

    providers = ort.get_available_providers()
    if device != "cuda":
        return Skip("onnxruntime/cuda", f"CUDA only and this run is --device {device} (onnxruntime "
                                        f"{ort.__version__} here offers {providers})")
    try:
        eng = runtime.load(bundle, providers=["CUDAExecutionProvider"])
    except runtime.ConfigError as e:  # not in this build, or failed to initialise
        return Skip("onnxruntime/cuda", f"onnxruntime {ort.__version__}: {e}")
    _check_device(eng, "cuda")
    return Backend("onnxruntime/cuda", _engine_calls(eng), "cuda", "runtime.load(bundle, providers="
                   "['CUDAExecutionProvider'])", {"providers": providers})


def _tensorrt(bundle: Path, device: str) -> Backend | Skip:
    from slimkit.export import tensorrt as trt_export

    try:
        trt = trt_export.require_tensorrt()
        found = f"TensorRT {trt.__version__} is installed"
    except runtime.MissingExtraError as e:
        trt, found = None, str(e).split(";")[0]  # "TensorRT is not installed (No module named ...)"
    if device != "cuda":
        return Skip("tensorrt", f"CUDA only and this run is --device {device} ({found})")
    if trt is None:
        return Skip("tensorrt", found)
    try:
        keys = export.add_engines(bundle, max_batch=TRT_MAX_BATCH)
        eng = runtime.load(bundle, backend="tensorrt")
    except runtime.MissingExtraError as e:  # e.g. cuda-python missing beside TensorRT
        return Skip("tensorrt", str(e))
    return Backend("tensorrt", _engine_calls(eng), "cuda", f"export.add_engines(bundle, max_batch="
                   f"{TRT_MAX_BATCH}); runtime.load(bundle, backend='tensorrt')",
                   {"tensorrt": trt.__version__, "plans": sorted(set(keys))})


def _graphs(bundle: Path, device: str) -> Backend | Skip:
    name = "torch.export+cuda_graphs"
    if device != "cuda":
        return Skip(name, f"CUDA graphs need a CUDA device and this run is --device {device}")
    eng = runtime.load(bundle, backend="torch", device="cuda", cuda_graphs=True)
    _check_device(eng, "cuda")
    return Backend(name, _engine_calls(eng), "cuda",
                   "runtime.load(bundle, backend='torch', device='cuda', cuda_graphs=True)")


def open_each(family: Any, bundle: Path, device: str, *, threads: int | None = None,
              names: Sequence[str] = BACKENDS) -> Iterator[Backend | Skip | tuple[str, Exception]]:
    """Open each backend of ``names`` (default :data:`BACKENDS`) for ``bundle`` (made from ``family``) on
    ``device``, in order.

    Yields a :class:`Backend`, a :class:`Skip`, or ``(name, exception)`` when opening it failed: one
    broken backend must not lose the others' figures, so the caller records the error and goes on.
    ``threads`` goes to the CPU runtimes (``None``: their default, one per core).
    """
    openers: dict[str, Callable[[], Backend | Skip]] = {
        REFERENCE: lambda: Backend(REFERENCE, _engine_calls(runtime.load(bundle, threads=threads)), "cpu",
                                   f"runtime.load(bundle, threads={threads})"),
        "eager": lambda: Backend("eager", _eager_calls(family, device), device,
                                 f"Family variants' nn.Module .to('{device}'), torch.inference_mode"),
        "torch.export": lambda: _torch_export(bundle, device, threads),
        "torch.export+cuda_graphs": lambda: _graphs(bundle, device),
        "onnxruntime/cuda": lambda: _ort_cuda(bundle, device),
        "tensorrt": lambda: _tensorrt(bundle, device),
    }
    for name in names:
        try:
            yield openers[name]()
        except Exception as e:  # noqa: BLE001 - recorded as this backend's error
            yield name, e


def _torch_export(bundle: Path, device: str, threads: int | None) -> Backend:
    eng = runtime.load(bundle, backend="torch", device=device, threads=threads)
    _check_device(eng, device)
    return Backend("torch.export", _engine_calls(eng), device, f"runtime.load(bundle, backend='torch', "
                   f"device='{device}', threads={threads})")
