"""What the GPU check ran on (device, driver, library versions, numeric settings) and its time guard."""

from __future__ import annotations

import datetime as dt
import os
import platform
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import Any

__all__ = ["Deadline", "environment", "git_commit", "fp32_knobs", "fp32_ieee"]

LIBRARIES = ("torch", "onnx", "onnxruntime", "onnxruntime-gpu", "onnxscript", "onnx-ir", "numpy",
             "tensorrt", "cuda-python", "torch-pruning", "mnist1d", "gymnasium", "slimkit")


class Deadline:
    """Seconds left of the run's budget; sections ask it before they start (``None``: no limit)."""

    def __init__(self, budget_s: float | None):
        self.start = time.perf_counter()
        self.budget_s = budget_s

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return float("inf") if self.budget_s is None else self.budget_s - self.elapsed()

    def allows(self, need_s: float) -> bool:
        """Whether ``need_s`` more seconds fit in the budget."""
        return self.left() >= need_s


def _version(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def git_commit() -> str | None:
    """The working tree's commit, when it travelled with its ``.git`` (and git is installed)."""
    if shutil.which("git") is None:
        return None
    try:
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True,
                             timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _nvidia_smi() -> dict:
    """Name, driver and memory of GPU 0 as ``nvidia-smi`` reports them (empty when it is absent)."""
    if shutil.which("nvidia-smi") is None:
        return {}
    query = "name,driver_version,memory.total"  # fields every driver knows: one unknown field fails them all
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError) as e:
        return {"error": f"nvidia-smi failed: {e}"}
    line = out.stdout.strip().splitlines()[0] if out.stdout.strip() else ""
    fields = [f.strip() for f in line.split(",")]
    if len(fields) != len(query.split(",")):
        return {"error": f"nvidia-smi answered {out.stdout.strip()!r} {out.stderr.strip()!r}"}
    return dict(zip(("smi_name", "driver", "smi_memory"), fields))


def fp32_knobs(torch) -> dict[str, tuple[Any, str]]:
    """The objects and attribute names that choose TF32 or IEEE float32 on CUDA, by torch's new API
    (torch >= 2.9), else the legacy flags. Only one API is touched: torch raises when they are mixed."""
    try:
        return {"cudnn_conv": (torch.backends.cudnn.conv, "fp32_precision"),
                "cuda_matmul": (torch.backends.cuda.matmul, "fp32_precision")}
    except AttributeError:
        return {"cudnn_conv": (torch.backends.cudnn, "allow_tf32"),
                "cuda_matmul": (torch.backends.cuda.matmul, "allow_tf32")}


@contextmanager
def fp32_ieee() -> Iterator[None]:
    """Full IEEE float32 for CUDA convolutions and matmuls inside the block (no TF32); restored after."""
    import torch

    knobs = fp32_knobs(torch)
    old = {key: getattr(obj, attr) for key, (obj, attr) in knobs.items()}
    for obj, attr in knobs.values():
        setattr(obj, attr, "ieee" if attr == "fp32_precision" else False)
    try:
        yield
    finally:
        for key, (obj, attr) in knobs.items():
            setattr(obj, attr, old[key])


def _fp32_settings(torch) -> dict:
    """How torch runs float32 matmuls and convolutions on CUDA (TF32 or IEEE): parity depends on it."""
    out = {}
    for key, (obj, attr) in fp32_knobs(torch).items():
        try:
            out[f"{key}.{attr}"] = getattr(obj, attr)
        except (AttributeError, RuntimeError) as e:
            out[f"{key}.{attr}"] = f"unreadable: {e}"
    return out


def environment(device: str, *, install: str | None = None) -> dict:
    """Everything the report's environment table shows; GPU fields only for ``device="cuda"``."""
    import onnxruntime as ort
    import torch

    env = {
        "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "device": device,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "libraries": {name: _version(name) for name in LIBRARIES},
        "torch_cuda_build": torch.version.cuda,
        "onnxruntime_providers": ort.get_available_providers(),
        "git_commit": git_commit(),
        "slimkit_install": install or os.environ.get("SLIMKIT_INSTALL") or "the current environment",
        "fp32": _fp32_settings(torch),
    }
    env["libraries"]["torch"] = torch.__version__  # the local build tag (+cu130, +cpu) too
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        env["gpu"] = {"name": torch.cuda.get_device_name(0), "capability": f"{props.major}.{props.minor}",
                      "memory_gib": round(props.total_memory / 2**30, 1),
                      "multiprocessors": props.multi_processor_count,
                      "cudnn": torch.backends.cudnn.version(), **_nvidia_smi()}
    return env
