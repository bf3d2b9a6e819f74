"""Shared by the benchmarks: the baseline session (a plain ONNX Runtime session), writing results, logging.

The baseline session gets the same options as ``slimkit.runtime``'s ONNX Runtime backend (the same
``session_options``: intra-op threads, one inter-op thread, sequential, no spinning), so any difference measured
against ``Engine.run`` is the engine's own overhead, not a different session configuration.

Imports only slimkit's public API and the standard library's (bench/_bench.py re-exports two names of
it for the N2N scripts until they move into bench/n2n/).
"""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from slimkit.runtime.backends import session_options
from slimkit.runtime.manifest import atomic_write_text, read_manifest, resolve_file

__all__ = ["WIDTHS", "raw_session", "variant_file", "raw_call", "threads_label", "atomic_write", "log", "cpu_name"]

WIDTHS = (0.25, 0.5, 0.75, 1.0)  # the SortedNet menu every suite uses; variants are named w0.25 ... w1.00

_T0 = time.perf_counter()


def raw_session(path: str | os.PathLike, threads: int | None) -> ort.InferenceSession:
    """A CPU ``InferenceSession`` with the engine backend's options (``threads=None``: ORT's default)."""
    opts = session_options(threads)
    return ort.InferenceSession(os.fspath(path), sess_options=opts, providers=["CPUExecutionProvider"])


def variant_file(bundle_dir: str | os.PathLike, name: str) -> Path:
    """The ``.onnx`` file of variant ``name``, as the manifest records it."""
    for v in read_manifest(bundle_dir).variants:
        if v.name == name:
            return resolve_file(bundle_dir, v.files["onnx"].path)
    raise KeyError(f"no variant {name!r} in {bundle_dir}")


def raw_call(sess: ort.InferenceSession):
    """``f(x) -> first output`` through the public ``sess.run`` a user would write by hand."""
    name = sess.get_inputs()[0].name

    def call(x: np.ndarray) -> np.ndarray:
        return sess.run(None, {name: x})[0]

    return call


def threads_label(threads: int | None) -> str:
    """How a thread setting is reported: ``"1"``, or ``"default"`` (ORT's own: one per physical core)."""
    return "default" if threads is None else str(threads)


def atomic_write(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder: a reader (or a run stopped
    half-way) never sees half a results file."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)


def log(msg: str) -> None:
    """Progress to stderr, with the seconds since the run started."""
    print(f"[{time.perf_counter() - _T0:6.0f}s] {msg}", file=sys.stderr, flush=True)


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
