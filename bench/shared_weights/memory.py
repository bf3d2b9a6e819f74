"""Resident memory that loading a bundle adds, measured in a fresh process per configuration.

``python -m bench.shared_weights.memory BUNDLE BACKEND MODE`` prints one JSON line: the process's
``VmRSS`` (all resident memory), ``RssAnon`` (heap: weights, pre-packed copies, arenas) and ``RssFile``
(mapped files: the onnxruntime/torch libraries' code, mmapped weights) in KiB, taken after the imports
and again after loading the bundle and one call per variant at batch 1 (a warm engine), and after one
more per variant at batch 64. Modes:

* ``copies``: ``runtime.load(bundle)``, one copy of the weights per variant (today, and the default);
* ``shared``: ``runtime.load(bundle, share_weights=True)``;
* ``inplace``: onnxruntime only, the usual graphs with the shared tensors given as views and nothing
  pre-packed or folded (the alternative to the split graphs ``shared`` runs);
* ``views_packed``: onnxruntime only, views given but pre-packing and folding left on (each session
  then packs its own copy: what the issue measured before choosing).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

__all__ = ["MODES", "engine", "main", "measure"]

MODES = ("copies", "shared", "inplace", "views_packed")
ROOT = Path(__file__).resolve().parents[2]  # the repository root, where `python -m bench...` runs


def _rss() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile"):
                out[key] = int(value.split()[0])
    return out


def engine(bundle: str | Path, backend: str, mode: str):
    """An engine over ``bundle`` loaded the way ``mode`` says (see the module docs), one thread."""
    from slimkit import runtime
    from slimkit.runtime.backends import OnnxRuntimeBackend
    from slimkit.runtime.manifest import resolve_file
    from slimkit.runtime.shared_weights import read_weights, tensor_views

    if mode in ("copies", "shared"):
        return runtime.load(bundle, backend=backend, threads=1, share_weights=mode == "shared")
    m = runtime.read_manifest(bundle)
    views = tensor_views(read_weights(bundle, m.weights), m.weights)
    backends = [OnnxRuntimeBackend(resolve_file(bundle, v.files["onnx"].path), threads=1, initializers=views,
                                   in_place=mode == "inplace") for v in m.variants]
    return runtime.Engine(m, backends, bundle_dir=bundle, threads=1)


def main(argv: list[str]) -> None:
    bundle, backend, mode = argv
    import numpy as np
    import onnxruntime  # noqa: F401  (its import is not the bundle's cost)

    import slimkit.runtime  # noqa: F401
    if backend == "torch":
        import torch  # noqa: F401

    before = _rss()
    eng = engine(bundle, backend, mode)
    shape = list(eng.input_spec.example_shape or eng.input_spec.shape)
    sample = np.random.default_rng(0).standard_normal([1, *shape[1:]]).astype(eng.input_spec.dtype)
    for name in eng.names:
        eng.run(sample, variant=name)
    warm = _rss()
    batch = np.repeat(sample, 64, axis=0)
    for name in eng.names:
        eng.run(batch, variant=name)
    big = _rss()
    print(json.dumps({"variants": len(eng.names), "kib_batch1": {k: warm[k] - before[k] for k in before},
                      "kib_batch64": {k: big[k] - before[k] for k in before}}))


def measure(bundle: Path, backend: str, mode: str) -> dict:
    """Run :func:`main` in a fresh interpreter (from the repository root) and return its figures."""
    done = subprocess.run([sys.executable, "-m", "bench.shared_weights.memory", str(bundle), backend, mode],
                          capture_output=True, text=True, check=False, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"memory run {bundle} {backend} {mode} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main(sys.argv[1:])
