"""The shared-weights rows (issue 16): one family per row, its bundles exported three ways (one weights
file, separate files as before, the largest variant alone), then measured side by side:

* bytes on disk, against the largest variant's own ONNX file;
* whether onnxruntime runs the same graph for a shared file as for a separate one (after its
  optimisations), and the INT8 twins' bytes;
* resident memory added by loading, a fresh process per configuration (bench/shared_weights/memory.py);
* latency of each mode against the separate-file bundle at batch 1 and 64, per variant and backend;
* switching variant every call against the same calls grouped by variant.

Each row fills its family's part of ``results.json`` (``{"families": {name: figures}}``), so the rows of
a method can run one at a time.
"""

from __future__ import annotations

import os
import time

from bench.core import Context, Measurement, Result, Row, Timing
from bench.shared_weights import families, measure, memory

__all__ = ["measure_row"]

BATCHES = (1, 64)


def _timing(row: Row, prefix: str) -> dict[int, tuple[str, Timing]]:
    return {b: (f"{prefix}b{b}", row.timing[f"{prefix}b{b}"]) for b in BATCHES}


def _memory(dirs: dict) -> dict:
    mem: dict = {"onnxruntime": {}, "torch": {}}
    for backend in ("onnxruntime", "torch"):
        mem[backend]["largest_alone"] = memory.measure(dirs["largest"], backend, "copies")
        mem[backend]["separate_files"] = memory.measure(dirs["separate"], backend, "copies")
        mem[backend]["shared_bundle_default"] = memory.measure(dirs["shared"], backend, "copies")
        mem[backend]["share_weights"] = memory.measure(dirs["shared"], backend, "shared")
    for mode in ("inplace", "views_packed"):
        mem["onnxruntime"][mode] = memory.measure(dirs["shared"], "onnxruntime", mode)
    return mem


def measure_row(row: Row, ctx: Context) -> Result:
    """Row ``row.params["family"]``: export, then bytes, memory, latency and switching (module docs)."""
    from slimkit import runtime

    p, name, t0, load = row.params, row.params["family"], time.perf_counter(), os.getloadavg()[0]
    dirs = families.build(name, ctx.scratch, samples=p["samples"], int8=p["int8"], model=p.get("model"),
                          log=ctx.log)
    what = families.FAMILIES[name]["what"] if not p.get("model") else f"{row.model} (quick)"
    res: dict = {"what": what, "export_s": time.perf_counter() - t0, "command": ctx.command,
                 "timing": {k: t.to_dict() for k, t in row.timing.items()}}
    res["disk"] = measure.disk(dirs)
    res["same_graph_at_run_time"] = measure.same_graph_at_run_time(dirs)
    if "int8" in dirs:
        res["int8_twins"] = measure.int8_twins(dirs["int8"])
    ctx.log(f"  {name}: memory, a fresh process per configuration")
    res["memory"] = _memory(dirs)

    ctx.log(f"  {name}: latency and switching, interleaved rounds")
    ms: list[Measurement] = []
    sep = runtime.load(dirs["separate"], threads=1, share_weights=False)
    engines = {"shared_bundle_default": runtime.load(dirs["shared"], threads=1),  # onnxruntime: a copy each
               "share_weights": runtime.load(dirs["shared"], threads=1, share_weights=True),
               "inplace": memory.engine(dirs["shared"], "onnxruntime", "inplace")}
    lat = {}
    for key, eng in engines.items():
        lat[key], got = measure.latency(eng, sep, _timing(row, ""), label=key, group=name)
        ms += got
    sep_t = runtime.load(dirs["separate"], backend="torch", threads=1, share_weights=False)
    sh_t = runtime.load(dirs["shared"], backend="torch", threads=1, share_weights=True)
    lat["torch_share_weights"], got = measure.latency(sh_t, sep_t, _timing(row, "torch_"), label="torch_share_weights",
                                                      group=name)
    res["latency_vs_separate"] = lat
    ms += got
    res["switching"] = {}
    for key, eng, prefix in (("onnxruntime_default", engines["shared_bundle_default"], "switch_"),
                             ("onnxruntime_separate_files", sep, "switch_"),
                             ("onnxruntime_share_weights", engines["share_weights"], "switch_"),
                             ("torch_share_weights", sh_t, "torch_switch_")):
        res["switching"][key], got = measure.switching(eng, _timing(row, prefix), label=key, group=name)
        ms += got
    res["seconds"] = time.perf_counter() - t0
    res["load_average"] = {"start": load, "end": os.getloadavg()[0]}  # 1 minute, at the row's start and end

    doc = ctx.load(row.file) or {}
    doc.update({"command": ctx.command, "quick": row.quick, "threads": 1})
    doc.setdefault("families", {})[name] = res
    return Result(doc=doc, measurements=ms)
