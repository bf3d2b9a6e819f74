"""Run the shared-weights figures: ``python -m bench.shared_weights [--quick]`` (see the package docs)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from . import families, measure, memory, report

HERE = Path(__file__).resolve().parent
BENCH = HERE.parent


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_family(name: str, scratch: Path, *, quick: bool) -> dict:
    from slimkit import runtime

    t0 = time.perf_counter()
    dirs = families.build(name, scratch, samples=1000 if quick else 2000, int8=name == "demo", log=_log)
    res: dict = {"what": families.FAMILIES[name]["what"], "export_s": time.perf_counter() - t0}
    res["disk"] = measure.disk(dirs)
    res["same_graph_at_run_time"] = measure.same_graph_at_run_time(dirs)
    if "int8" in dirs:
        res["int8_twins"] = measure.int8_twins(dirs["int8"])

    _log(f"  {name}: memory, a fresh process per configuration")
    mem: dict = {"onnxruntime": {}, "torch": {}}
    for backend in ("onnxruntime", "torch"):
        mem[backend]["largest_alone"] = memory.measure(dirs["largest"], backend, "copies")
        mem[backend]["separate_files"] = memory.measure(dirs["separate"], backend, "copies")
        mem[backend]["shared_bundle_default"] = memory.measure(dirs["shared"], backend, "copies")
        mem[backend]["share_weights"] = memory.measure(dirs["shared"], backend, "shared")
    for mode in ("inplace", "views_packed"):
        mem["onnxruntime"][mode] = memory.measure(dirs["shared"], "onnxruntime", mode)
    res["memory"] = mem

    batches, rounds, budget = (1, 64), (5 if quick else 15), (0.4 if quick else 3.0)
    _log(f"  {name}: latency ({rounds} interleaved rounds per figure)")
    sep = runtime.load(dirs["separate"], threads=1, share_weights=False)
    engines = {"shared_bundle_default": runtime.load(dirs["shared"], threads=1),  # onnxruntime: a copy each
               "share_weights": runtime.load(dirs["shared"], threads=1, share_weights=True),
               "inplace": memory.engine(dirs["shared"], "onnxruntime", "inplace")}
    lat = {k: measure.latency(e, sep, batches=batches, budget_s=budget, rounds=rounds) for k, e in engines.items()}
    sep_t = runtime.load(dirs["separate"], backend="torch", threads=1, share_weights=False)
    sh_t = runtime.load(dirs["shared"], backend="torch", threads=1, share_weights=True)
    lat["torch_share_weights"] = measure.latency(sh_t, sep_t, batches=batches, budget_s=budget, rounds=rounds)
    res["latency_vs_separate"] = lat

    _log(f"  {name}: switching variant every call")
    res["switching"] = {
        "onnxruntime_default": measure.switching(engines["shared_bundle_default"], batches=batches,
                                                 budget_s=budget, rounds=rounds),
        "onnxruntime_separate_files": measure.switching(sep, batches=batches, budget_s=budget, rounds=rounds),
        "onnxruntime_share_weights": measure.switching(engines["share_weights"], batches=batches,
                                                       budget_s=budget, rounds=rounds),
        "torch_share_weights": measure.switching(sh_t, batches=batches, budget_s=budget, rounds=rounds),
    }
    res["seconds"] = time.perf_counter() - t0
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.shared_weights", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer rounds and samples; writes under bench/out/")
    ap.add_argument("--families", nargs="+", default=list(families.FAMILIES), choices=list(families.FAMILIES))
    ap.add_argument("--out", type=Path, default=None, help="results JSON (the Markdown goes beside it)")
    ap.add_argument("--render", type=Path, default=None, metavar="JSON",
                    help="rewrite bench/SHARED_WEIGHTS_RESULTS.md from this results file, measuring nothing")
    a = ap.parse_args(argv)
    if a.render is not None:
        (BENCH / "SHARED_WEIGHTS_RESULTS.md").write_text(report.render(json.loads(a.render.read_text())))
        return 0
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    scratch = BENCH / "out" / "shared_weights"
    scratch.mkdir(parents=True, exist_ok=True)
    json_path = a.out or (BENCH / "out" / "shared_weights-quick.json" if a.quick else HERE / "results.json")
    md_path = (json_path.with_suffix(".md") if (a.quick or a.out) else BENCH / "SHARED_WEIGHTS_RESULTS.md")
    command = "python -m bench.shared_weights" + (" --quick" if a.quick else "") + (
        f" --families {' '.join(a.families)}" if a.families != list(families.FAMILIES) else "")
    results = {"command": command, "quick": a.quick, "threads": 1, "families": {},
               "load_average": {"start": os.getloadavg()[0]}}
    for name in a.families:
        _log(f"{name}:")
        results["families"][name] = run_family(name, scratch, quick=a.quick)
    results["load_average"]["end"] = os.getloadavg()[0]
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    md_path.write_text(report.render(results))
    _log(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
