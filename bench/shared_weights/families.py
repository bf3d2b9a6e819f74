"""The two families measured, and their bundles: shared (the default), separate files (as before) and
the largest variant alone.

* ``demo``: the demo's family, SortedNet of the zoo ``rescnn`` on MNIST-1D (export/demo.py).
* ``bert``: a BERT-style encoder, the zoo ``transformer`` scaled to 4 layers, hidden 256, 4 heads,
  FFN 1024 (SortedNet slices heads and FFN width); the quick row uses a smaller one (``model`` in its
  params overrides these sizes).

Widths 0.25 / 0.5 / 0.75 / 1.0 with ``epochs=0``: SortedNet still reorders channels, slices every width
and recalibrates BatchNorm, and bytes, memory and speed do not depend on what the weights learned.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from bench.common import WIDTHS

__all__ = ["FAMILIES", "build"]

FAMILIES = {
    "demo": {"model": "rescnn", "kwargs": {}, "layout": "channels",
             "what": "SortedNet of the zoo rescnn (channels (32, 64), depths (2, 2)) on MNIST-1D"},
    "bert": {"model": "transformer", "kwargs": {"d_model": 256, "num_layers": 4, "num_heads": 4, "ffn_dim": 1024},
             "layout": "sequence",
             "what": "SortedNet of a BERT-style encoder (zoo transformer: 4 layers, hidden 256, 4 heads, FFN 1024)"},
}


def build(name: str, root: Path, *, samples: int, int8: bool = False, model: Mapping[str, Any] | None = None,
          log: Callable[[str], None] = print) -> dict[str, Path]:
    """Export family ``name`` (its zoo model's kwargs updated by ``model``) as the bundles under
    ``root/name``: shared, separate, the largest alone and, with ``int8``, a shared bundle with INT8 twins;
    returns ``{kind: bundle dir}``."""
    import torch

    from slimkit import compress, export

    spec = FAMILIES[name]
    splits = compress.data.mnist1d(num_samples=samples, layout=spec["layout"], seed=0)
    torch.manual_seed(0)
    net = compress.zoo.build(spec["model"], **{**spec["kwargs"], **(model or {})})
    fam = compress.sortednet(net, train=splits.train, val=None, widths=WIDTHS, epochs=0,
                             example_input=splits.example_input, progress=False, seed=0)
    largest = compress.Family([fam.variants[-1]], method=fam.method, example_input=fam.example_input, task=fam.task)
    out = root / name
    if out.exists():
        shutil.rmtree(out)
    dirs = {}
    for kind, family, share in (("shared", fam, True), ("separate", fam, False), ("largest", largest, True)):
        log(f"  export {name}/{kind}")
        dirs[kind] = export.bundle(family, splits.example_input, out / kind, torch_export=True,
                                   share_weights=share)
    if int8:
        log(f"  export {name}/int8")
        dirs["int8"] = export.bundle(fam, splits.example_input, out / "int8", quantize="int8",
                                     calibration=splits.val, latency_batches=())
    return dirs
