"""``python -m bench.gpu [--device cpu|cuda] [--quick] [--out DIR]``: the GPU path, checked in one run.

Builds the demo family and a BERT-style encoder family here, bundles each with ``torch.export``
programs, and for every backend present (eager torch, ``torch.export`` with and without CUDA graphs,
onnxruntime CUDA, TensorRT; onnxruntime CPU as the reference) measures parity, p50/p99 latency at
batch 1 and 64, throughput, the width speedup and the cost of switching variant on every call. Writes
``GPU_RESULTS.md`` and ``results.json`` after every family (so a run stopped by its time limit keeps
what it measured), and copies both into ``$OUT`` when that is set (the device machine sends ``$OUT``
back). Exit status 1 when something errored or a parity figure missed its target, else 0; speed
targets are reported, not enforced. ``make gpu-check`` (``bench/gpu/run.sh``) installs slimkit on a bare
GPU machine first; docs/gpu-check.md says how to run it there.

Outputs: ``--device cuda`` writes ``bench/GPU_RESULTS.md`` and ``bench/gpu/results.json`` (committed);
``--device cpu`` writes under ``bench/out/gpu-check-cpu/`` (ignored); ``--out DIR`` puts both in DIR.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.gpu.report import TARGETS, judge, markdown
from slimkit.runtime.manifest import atomic_write_text

HERE = Path(__file__).resolve().parent
BENCH = HERE.parent
FULL_BUDGET_S = 300.0  # full CUDA run: with a machine's start-up, well inside the 8 minutes
NOTES = (
    "torch runs float32 convolutions on CUDA in TF32 by default (matmuls stay IEEE; the environment table "
    "gives the settings): a parity miss of the conv-based demo family can be rounding alone, and the "
    "TF32-off parity table beside it tells rounding from a real difference.",
    "CUDA graphs are measured through the torch backend (runtime.load(..., cuda_graphs=True)), the only "
    "place slimkit offers them; eager modules run without graphs, as the baseline of the target.",
    "Throughput is the batch over the mean time of a call, transfers included; p50 / p99 are over "
    "single calls, the variants interleaved round by round.",
)
FAMILY_NAMES = ("demo", "encoder")  # families.FAMILIES' names, here so that --render imports no torch


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="where torch runs (default cuda)")
    p.add_argument("--quick", action="store_true", help="tiny families and few timed calls (smoke test)")
    p.add_argument("--out", type=Path, help="folder for GPU_RESULTS.md and results.json")
    p.add_argument("--budget-s", type=float, help=f"seconds the run may take; families and timings that "
                   f"would not fit are skipped (default {FULL_BUDGET_S:.0f} for a full CUDA run, else none)")
    p.add_argument("--families", nargs="+", choices=FAMILY_NAMES, help="default: all")
    p.add_argument("--threads", type=int, help="torch and onnxruntime CPU threads (default: one per core)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--render", type=Path, metavar="JSON", help="measure nothing: judge the targets of an "
                   "existing results.json again and rewrite the Markdown report (into --out, else beside the "
                   "JSON; bench/gpu/results.json renders bench/GPU_RESULTS.md)")
    return p.parse_args(argv)


def _paths(args: argparse.Namespace) -> tuple[Path, Path]:
    if args.out is not None:
        return args.out / "GPU_RESULTS.md", args.out / "results.json"
    if args.device == "cuda":
        return BENCH / "GPU_RESULTS.md", HERE / "results.json"
    return BENCH / "out" / "gpu-check-cpu" / "GPU_RESULTS.md", BENCH / "out" / "gpu-check-cpu" / "results.json"


def _write(results: dict, md: Path, js: Path, started: float | None) -> None:
    if started is not None:
        results["elapsed_s"] = time.perf_counter() - started
    results["targets"] = judge(results)
    text = json.dumps(results, indent=1, default=str)
    for f in (md, js):
        f.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(js, text + "\n")
    atomic_write_text(md, markdown(results))
    out = os.environ.get("OUT")
    if out and Path(out).is_dir():  # the device machine returns what is under $OUT
        for f in (md, js):
            shutil.copyfile(f, Path(out) / f.name)


def _failed(results: dict) -> list[str]:
    bad = [f"{r['family']}/{r['backend']}: parity {r['figure']}" for r in results["targets"]
           if r["target"] == "parity" and r["verdict"] == "FAIL"]
    for name, fam in results["families"].items():
        if "error" in fam:
            bad.append(f"{name}: {fam['error']}")
        bad += [f"{name}/{b}: {be['error']}" for b, be in fam.get("backends", {}).items() if "error" in be]
    return bad


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render is not None:
        results = json.loads(args.render.read_text())
        committed = args.render.resolve() == (HERE / "results.json").resolve()  # bench/gpu -> bench/GPU_RESULTS.md
        md = (args.out or (BENCH if committed else args.render.parent)) / "GPU_RESULTS.md"
        js = args.out / "results.json" if args.out else args.render
        _write(results, md, js, None)
        print(_summary(results))
        return 0
    started = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f}s] {msg}", file=sys.stderr, flush=True)

    import torch

    from bench.gpu import measure
    from bench.gpu.check import check_family, error_record
    from bench.gpu.env import Deadline, environment
    from bench.gpu.families import FAMILIES

    if args.device == "cuda" and not torch.cuda.is_available():
        print(f"error: --device cuda, but torch {torch.__version__} sees no CUDA device; run on a GPU machine "
              "(docs/gpu-check.md) or pass --device cpu", file=sys.stderr)
        return 2
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # one line per export about torchvision
    budget = args.budget_s if args.budget_s is not None else (
        FULL_BUDGET_S if args.device == "cuda" and not args.quick else None)
    deadline = Deadline(budget)
    settings = measure.QUICK if args.quick else measure.FULL
    md, js = _paths(args)
    command = " ".join(["python -m bench.gpu", *(sys.argv[1:] if argv is None else argv)])
    results: dict = {
        "schema": 1, "issue": 18, "targets_thresholds": TARGETS,
        "settings": {"command": command, "device": args.device, "mode": "quick" if args.quick else "full",
                     "budget_s": budget, "seed": args.seed, "threads": args.threads,
                     "measure": settings.as_dict(), "json_name": os.path.relpath(js, md.parent)},
        "environment": environment(args.device), "families": {}, "notes": list(NOTES)}
    log(f"device {args.device}: {results['environment'].get('gpu', {}).get('name', 'CPU')}; writing {md}")
    specs = [f for f in FAMILIES if args.families is None or f.name in args.families]
    with tempfile.TemporaryDirectory(prefix="slimkit-gpu-check-") as work:
        for spec in specs:
            if budget is not None and not deadline.allows(spec.need_s):
                results["families"][spec.name] = {"title": spec.title, "skipped": (
                    f"time guard: {deadline.left():.0f} s of the {budget:.0f} s budget left, this family "
                    f"needs about {spec.need_s:.0f} s")}
                log(f"{spec.name}: skipped by the time guard")
                continue
            results["families"][spec.name] = res = {}
            try:
                check_family(spec, res, device=args.device, quick=args.quick, settings=settings,
                             deadline=deadline, work=Path(work), seed=args.seed, threads=args.threads, log=log)
            except Exception as e:  # noqa: BLE001 - keep what it measured, and the other family's figures
                res.update(error_record(e))
                log(f"{spec.name}: failed: {e}")
            _write(results, md, js, started)
    if not specs:
        _write(results, md, js, started)
    print(_summary(results))
    bad = _failed(results)
    for b in bad:
        print(f"problem: {b}", file=sys.stderr)
    log(f"done: {md} and {js}")
    return 1 if bad else 0


def _summary(results: dict) -> str:
    """The targets as a short text table (the device machine's reply shows the end of the output)."""
    lines = [f"{'target':<32}{'family':<9}{'backend':<26}{'verdict':<8}figure"]
    for r in results["targets"]:
        lines.append(f"{r['target']:<32}{r['family']:<9}{r['backend']:<26}{r['verdict']:<8}{r['figure']}")
    for name, fam in results["families"].items():
        for b, be in fam.get("backends", {}).items():
            if be["status"] == "skipped":
                lines.append(f"skipped {name}/{b}: {be['reason'][:150]}")
        if "skipped" in fam:
            lines.append(f"skipped {name}: {fam['skipped']}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
