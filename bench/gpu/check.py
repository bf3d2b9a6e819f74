"""One family through the whole check: build, bundle, open every backend, parity, latency, ratios.

Every failure is recorded where it happened (a backend's ``error``, a family's ``error``) and the run
goes on, so one broken backend on a GPU machine lent for minutes does not lose the other figures.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from bench.gpu import measure
from bench.gpu.backends import REFERENCE, Backend, Skip, open_each
from bench.gpu.env import Deadline, fp32_ieee
from bench.gpu.families import FamilySpec
from slimkit import export

__all__ = ["check_family", "error_record", "TIMING_NEED_S"]

TIMING_NEED_S = 15.0  # a backend's latency and switching runs start only with this much budget left
GRAPHS = "torch.export+cuda_graphs"


def error_record(e: BaseException) -> dict:
    """An exception as JSON: type, message and the last lines of the traceback."""
    tb = traceback.format_exception(type(e), e, e.__traceback__)
    return {"error": f"{type(e).__name__}: {e}", "traceback": "".join(tb)[-2000:]}


def check_family(spec: FamilySpec, res: dict[str, Any], *, device: str, quick: bool,
                 settings: measure.Settings, deadline: Deadline, work: Path, seed: int, threads: int | None,
                 log: Callable[[str], None]) -> dict:
    """Build ``spec``'s family, bundle it with ``torch.export`` programs and measure every backend.

    The figures go into ``res`` as they come, so that when a step raises, the caller still holds what
    the steps before it measured. Returns ``res``.
    """
    res.update(title=spec.title, graphs_target=spec.graphs_target, timings_s={})
    t = time.perf_counter()
    fam, info = spec.build(quick, seed, device)
    res["build"] = info
    res["variants"] = [{"name": v.name, "params": int(v.params), "macs": int(v.macs),
                        "metrics": {k: float(x) for k, x in v.metrics.items()}} for v in fam.variants]
    res["timings_s"]["build"] = time.perf_counter() - t
    log(f"{spec.name}: built {fam.names} in {res['timings_s']['build']:.0f} s; exporting the bundle")

    t = time.perf_counter()
    bundle = export.bundle(fam, fam.example_input, work / spec.name, torch_export=True)
    res["timings_s"]["export"] = time.perf_counter() - t
    log(f"{spec.name}: bundle (ONNX + torch.export per variant) in {res['timings_s']['export']:.0f} s")

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    xs = measure.inputs(tuple(fam.example_input.shape[1:]), settings.batches, seed + 1)
    backends: dict[str, Backend] = {}
    res["backends"] = {}
    for item in open_each(fam, bundle, device, threads=threads):
        if isinstance(item, Skip):
            res["backends"][item.name] = {"status": "skipped", "reason": item.reason}
        elif isinstance(item, tuple):
            res["backends"][item[0]] = {"status": "error", **error_record(item[1])}
        else:
            backends[item.name] = item
            res["backends"][item.name] = {"status": "measured", "device": item.device, "how": item.how, **item.info}
    if REFERENCE not in backends:
        raise RuntimeError(f"the onnxruntime CPU reference did not open: {res['backends'][REFERENCE]}")
    ref = backends[REFERENCE]
    reference = {(n, b): ref.calls[n](x) for n in ref.calls for b, x in xs.items()}

    t = time.perf_counter()
    for name, be in backends.items():
        entry = res["backends"][name]
        try:
            if name != REFERENCE:
                entry["parity"] = measure.parity(be.calls, reference, xs)
            if name == REFERENCE and not spec.time_reference:
                entry["timing"] = "not timed: the parity reference only for this family (slow on CPU)"
                continue
            if not deadline.allows(TIMING_NEED_S):
                entry["timing"] = f"not timed: {deadline.left():.0f} s of the run's budget left"
                continue
            log(f"{spec.name}: timing {name}")
            entry["latency"] = {str(b): measure.latency(be.calls, xs[b], settings, sync) for b in settings.batches}
            entry["switching"] = measure.switching(be.calls, xs[min(xs)], settings, sync)
        except Exception as e:  # noqa: BLE001 - recorded, the other backends still run
            entry.update(status="error", **error_record(e))
            log(f"{spec.name}: {name} failed: {e}")
    if device == "cuda":
        with fp32_ieee():  # is a parity miss TF32 rounding or a real difference? (graphs keep their kernels)
            for name in ("eager", "torch.export"):
                if name in backends and "parity" in res["backends"][name]:
                    res["backends"][name]["parity_ieee_fp32"] = measure.parity(backends[name].calls, reference, xs)
    res["cuda_graphs"] = _graphs_vs_eager(backends, xs[min(xs)], settings, sync, deadline)
    res["timings_s"]["measure"] = time.perf_counter() - t
    return res


def _graphs_vs_eager(backends: dict[str, Backend], x: Any, settings: measure.Settings,
                     sync: Callable[[], None], deadline: Deadline) -> dict:
    """Per variant at batch 1: eager module, torch.export and torch.export with CUDA graphs, interleaved."""
    if GRAPHS not in backends:
        return {"skipped": "no CUDA graphs backend in this run (it needs --device cuda)"}
    if not deadline.allows(TIMING_NEED_S):
        return {"skipped": f"{deadline.left():.0f} s of the run's budget left"}
    names = [n for n in ("eager", "torch.export", GRAPHS) if n in backends]
    out = {}
    try:
        for variant in backends[GRAPHS].calls:
            out[variant] = measure.side_by_side({n: backends[n].calls[variant] for n in names}, x, settings, sync,
                                                baseline=GRAPHS)
    except Exception as e:  # noqa: BLE001
        out = {**out, **error_record(e)}
    return out
