"""Measure slimkit's quality and speed figures in one run; write ``results.json`` and ``RESULTS.md``.

Usage:
    python bench/run.py                  # full run (~10-15 min on 2 shared cores)
    python bench/run.py --quick          # smoke run (~2-3 min); writes bench/out/results-quick.{json,md}
    python bench/run.py --out bench/results.json

Quality: MNIST-1D, zoo ResCNN teacher (``fit``, T epochs), SortedNet over it (S epochs); each width
against a from-scratch network of the same shape trained T + S epochs. Speed, on the same bundle:
``Engine.run`` versus a hand-written ``sess.run`` on the same file, switching widths every call versus
width after width, p50/p95 per width at batch 1 and 64 for intra-op threads 1 and ORT's default.
Every speed figure is a ratio to a baseline timed interleaved with it (see ``_speed.py``). Progress
goes to stderr.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the _private helpers beside this file

import _quality  # noqa: E402
import _report  # noqa: E402
import _speed  # noqa: E402
from _bench import WIDTHS  # noqa: E402

HERE = Path(__file__).resolve().parent

FULL = dict(samples=10_000, teacher_epochs=8, epochs=6, seeds=(0, 1), overhead=(30, 2000), switch=(30, 2000),
            lat_b1=(20, 100), lat_b64=(20, 20))
QUICK = dict(samples=2_000, teacher_epochs=3, epochs=2, seeds=(0,), overhead=(6, 300), switch=(6, 300),
             lat_b1=(5, 40), lat_b64=(5, 8))
TARGETS = {"keep_full": 0.96, "vs_independent_points": 1.5, "overhead": 1.05, "alternate": 1.0, "speedup_b64": 2.0}

_T0 = time.perf_counter()


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - _T0:6.0f}s] {msg}", file=sys.stderr, flush=True)


def machine_facts(torch_threads: int) -> dict:
    import onnxruntime as ort
    import torch

    model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"logical_cores": os.cpu_count(),
            "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "cpu": model, "platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "onnxruntime": ort.__version__, "numpy": np.__version__,
            "torch_threads": torch_threads, "gpu": "none used (CPU only)",
            "loadavg_start": list(os.getloadavg()),
            "note": "shared and noisy machine: other processes use the CPU during the run, so compare ratios "
                    "timed interleaved in this run, not absolute milliseconds"}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer samples, epochs and rounds (smoke test)")
    p.add_argument("--out", type=Path, help="results JSON (default bench/results.json; --quick: "
                   "bench/out/results-quick.json); the Markdown summary goes beside it")
    p.add_argument("--samples", type=int, help="MNIST-1D samples (default 10000)")
    p.add_argument("--teacher-epochs", type=int, help="T: teacher epochs (default 8)")
    p.add_argument("--epochs", type=int, help="S: SortedNet epochs (default 6)")
    p.add_argument("--seeds", type=int, nargs="+", help="seeds of the independent baselines (default 0 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data, the teacher and SortedNet")
    p.add_argument("--render", type=Path, metavar="JSON",
                   help="measure nothing: rewrite the Markdown summary beside an existing results JSON")
    p.add_argument("--torch-threads", type=int, default=1,
                   help="torch intra-op threads for training (default 1: two oversubscribe a busy 2-core box)")
    return p.parse_args(argv)


def _md_path(out: Path) -> Path:
    return out.with_name("RESULTS.md") if out.name == "results.json" else out.with_suffix(".md")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.render:
        md = _md_path(args.render)
        md.write_text(_report.markdown(json.loads(args.render.read_text()), json_path=args.render))
        log(f"wrote {md} from {args.render}")
        return 0
    cfg = dict(QUICK if args.quick else FULL)
    for key, val in (("samples", args.samples), ("teacher_epochs", args.teacher_epochs),
                     ("epochs", args.epochs), ("seeds", args.seeds)):
        if val is not None:
            cfg[key] = tuple(val) if key == "seeds" else val
    out = args.out or (HERE / "out" / "results-quick.json" if args.quick else HERE / "results.json")
    md = _md_path(out)

    import torch

    from slimkit import compress, export, runtime

    torch.set_num_threads(args.torch_threads)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # "torchvision is not installed" on every export
    result: dict = {"command": " ".join(["python", "bench/run.py", *(sys.argv[1:] if argv is None else argv)]),
                    "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                    "machine": machine_facts(args.torch_threads), "targets_thresholds": TARGETS,
                    "settings": {**{k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()},
                                 "widths": list(WIDTHS), "seed": args.seed, "quick": args.quick,
                                 "model": {"zoo": "rescnn", **{k: list(v) for k, v in _quality.ZOO_KWARGS.items()}}}}
    seed, T, S = args.seed, cfg["teacher_epochs"], cfg["epochs"]

    # -- quality ----------------------------------------------------------------------------------------
    log(f"MNIST-1D: {cfg['samples']} samples (seed {seed})")
    splits = compress.data.mnist1d(num_samples=cfg["samples"], layout="channels", seed=seed)
    log(f"teacher: zoo rescnn {_quality.ZOO_KWARGS}, fit {T} epochs")
    teacher, teacher_info = _quality.train_teacher(splits, epochs=T, seed=seed)
    log(f"      test accuracy {teacher_info['test_accuracy']:.4f} ({teacher_info['wall_s']:.0f} s)")
    log(f"SortedNet: widths {WIDTHS}, {S} epochs")
    fam, sn_wall = _quality.train_sortednet(teacher, splits, widths=WIDTHS, epochs=S, seed=seed)
    log(f"      done ({sn_wall:.0f} s)")
    rows = []
    for v in fam.variants:
        acc = compress.evaluate(v.model, splits.test)["accuracy"]
        rows.append({"variant": v.name, "width": v.config["shape"]["width"], "channels": list(_quality.stage_channels(v.model)),
                     "channels_config": v.config["shape"]["channels"], "params": v.params, "macs": v.macs,
                     "acc_sortednet": acc, "independent": []})
        log(f"      {v.name}: test accuracy {acc:.4f}")
    for s in cfg["seeds"]:
        for v, row in zip(fam.variants, rows):
            log(f"independent {v.name} (channels {row['channels']}), seed {s}: fit {T + S} epochs")
            ind = _quality.independent(v, splits, epochs=T + S, seed=s)
            row["independent"].append(ind)
            log(f"      test accuracy {ind['test_accuracy']:.4f} ({ind['wall_s']:.0f} s)")
    full = rows[-1]["acc_sortednet"]
    for row in rows:
        accs = [r["test_accuracy"] for r in row["independent"]]
        row["acc_independent_mean"] = float(np.mean(accs))
        row["acc_independent_std"] = float(np.std(accs))
        row["delta_points_vs_independent"] = 100 * (row["acc_sortednet"] - row["acc_independent_mean"])
        row["ratio_to_full"] = row["acc_sortednet"] / full
        row["ratio_to_teacher"] = row["acc_sortednet"] / teacher_info["test_accuracy"]
    result["quality"] = {"teacher": teacher_info, "sortednet": {"epochs": S, "wall_s": sn_wall}, "variants": rows,
                         "full_variant": rows[-1]["variant"]}

    # -- speed, on the bundle of this family -------------------------------------------------------------
    with tempfile.TemporaryDirectory(prefix="slimkit-bench-") as tmp:
        bundle_dir = Path(tmp) / "bundle"
        log("export: bundle of every width")
        t = time.perf_counter()
        export.bundle(fam, splits.example_input, bundle_dir, overwrite=True)
        result["quality"]["export_wall_s"] = time.perf_counter() - t
        engines = {t_: runtime.load(bundle_dir, threads=t_) for t_ in (1, None)}
        log("accuracy through ONNX Runtime versus PyTorch, per width")
        result["onnx_parity"] = _quality.onnx_parity(fam, engines[1], splits.test, log)
        rng = np.random.default_rng(0)
        shape = tuple(splits.example_input.shape[1:])
        xs = {b: rng.standard_normal((b, *shape)).astype(np.float32) for b in (1, 64)}
        speed: dict = {"overhead": [], "switching": [], "latency": []}
        for threads in (1, None):
            eng = engines[threads]
            log(f"threads={threads}: Engine.run vs sess.run at batch 1, {cfg['overhead'][0]} rounds x "
                f"{cfg['overhead'][1]} calls")
            o = _speed.overhead(eng, bundle_dir, xs[1], threads=threads, rounds=cfg["overhead"][0],
                                calls=cfg["overhead"][1])
            speed["overhead"].append(o)
            log("      median us/call " + ", ".join(f"{k} {v:.1f}" for k, v in o["median_us"].items())
                + "; ratio " + ", ".join(f"{k} {v['median']:.3f}" for k, v in o["ratio_vs_raw"].items()))
            log(f"threads={threads}: alternating widths every call vs width after width")
            s_ = _speed.switching(eng, bundle_dir, xs[1], threads=threads, rounds=cfg["switch"][0], calls=cfg["switch"][1])
            speed["switching"].append(s_)
            log(f"      ratio alternate/stay: engine {s_['ratio_alternate_vs_stay']['median']:.3f}, "
                f"plain sessions {s_['raw_ratio_alternate_vs_stay']['median']:.3f}, "
                f"engine over plain {s_['engine_over_raw_switching']['median']:.3f}")
            for b in (1, 64):
                rounds, calls = cfg[f"lat_b{b}"]
                log(f"threads={threads}: latency per width at batch {b}, {rounds} rounds x {calls} calls")
                lat = _speed.latency(eng, xs[b], threads=threads, rounds=rounds, calls=calls)
                speed["latency"].append(lat)
                log("      p50 ms " + ", ".join(f"{n} {r['p50_ms']:.3f}" for n, r in lat["per_variant"].items())
                    + f"; speedup {lat['speedup']['median']:.2f}x")
        result["speed"] = speed

    result["machine"]["loadavg_end"] = list(os.getloadavg())
    result["targets"] = targets(result)
    result["wall_s"] = time.perf_counter() - _T0
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    md.write_text(_report.markdown(result, json_path=out))
    log(f"wrote {out} and {md} ({result['wall_s']:.0f} s in all)")
    for t_ in result["targets"]:
        log(f"  {t_['status']:>12}  {t_['target']}: {t_['value']}")
    return 0


def targets(r: dict) -> list[dict]:
    """Every target with its measured value and a status: pass, fail, or within noise."""
    out = []

    def add(target, value, ok, noise_ok=False):
        out.append({"target": target, "value": value, "status": "pass" if ok else ("within noise" if noise_ok else "fail")})

    q = r["quality"]["variants"]
    worst = min(q, key=lambda row: row["ratio_to_full"])
    add(f"every width keeps >= {TARGETS['keep_full']:.0%} of the full (w1.00) accuracy",
        f"min {worst['ratio_to_full']:.4f} ({worst['variant']})", worst["ratio_to_full"] >= TARGETS["keep_full"])
    worst_t = min(q, key=lambda row: row["ratio_to_teacher"])
    add(f"every width keeps >= {TARGETS['keep_full']:.0%} of the teacher's accuracy (stricter reading)",
        f"min {worst_t['ratio_to_teacher']:.4f} ({worst_t['variant']})",
        worst_t["ratio_to_teacher"] >= TARGETS["keep_full"])
    wide = [row for row in q if row["width"] >= 0.5]
    worst_d = min(wide, key=lambda row: row["delta_points_vs_independent"])
    add(f"widths >= 0.5 within {TARGETS['vs_independent_points']} points of independent networks",
        f"worst {worst_d['delta_points_vs_independent']:+.2f} points ({worst_d['variant']})",
        worst_d["delta_points_vs_independent"] >= -TARGETS["vs_independent_points"])
    p = r["onnx_parity"]
    add("accuracy through ONNX equals PyTorch's, every width",
        f"{sum(row['acc_torch'] == row['acc_onnx'] for row in p)}/{len(p)} equal; "
        f"{sum(row['predictions_differing'] for row in p)} predictions differ",
        all(row["acc_torch"] == row["acc_onnx"] for row in p))
    for o in r["speed"]["overhead"]:
        for k, label in (("engine_variant", "variant=largest"), ("engine_budget", "budget=1.0")):
            s = o["ratio_vs_raw"][k]
            add(f"Engine.run({label}) <= {TARGETS['overhead']}x raw sess.run, b1, threads {o['threads']}",
                f"{s['median']:.3f}x [IQR {s['q1']:.3f}-{s['q3']:.3f}]", s["median"] <= TARGETS["overhead"],
                s["q1"] <= TARGETS["overhead"])
    for sw in r["speed"]["switching"]:
        s = sw["ratio_alternate_vs_stay"]
        add(f"alternating widths every call costs no more than width after width, threads {sw['threads']}",
            f"{s['median']:.3f}x [IQR {s['q1']:.3f}-{s['q3']:.3f}]", s["median"] <= TARGETS["alternate"],
            s["q1"] <= TARGETS["alternate"])
        e = sw["engine_over_raw_switching"]
        add(f"(diagnostic) the engine adds no switching cost beyond plain ORT sessions, threads {sw['threads']}",
            f"{e['median']:.3f}x [IQR {e['q1']:.3f}-{e['q3']:.3f}]", e["median"] <= TARGETS["alternate"],
            e["q1"] <= TARGETS["alternate"])
    for lat in r["speed"]["latency"]:
        if lat["batch"] == 64:
            s = lat["speedup"]
            add(f"{s['of']} >= {TARGETS['speedup_b64']}x faster than {s['over']} at b64, threads {lat['threads']}",
                f"{s['median']:.2f}x [IQR {s['q1']:.2f}-{s['q3']:.2f}]", s["median"] >= TARGETS["speedup_b64"])
    return out


if __name__ == "__main__":
    sys.exit(main())
