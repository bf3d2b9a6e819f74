"""The main job on the built-in default: MNIST-1D -> teacher -> SortedNet -> ONNX bundle -> runtime.

``slimkit demo`` calls :func:`run_demo`; every step goes through the public API a user would call.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

__all__ = ["DemoRow", "run_demo", "format_table"]


@dataclass
class DemoRow:
    """One row of the demo's table: a variant's cost, its accuracy in PyTorch and ONNX, its latency."""
    variant: str
    params: int
    macs: int
    acc_torch: float
    acc_onnx: float
    p50_ms_b1: float
    p50_ms_b64: float


def _onnx_accuracy(engine, name: str, loader) -> float:
    correct = total = 0
    for x, y in loader:
        out = engine.run(x.numpy(), variant=name)
        correct += int((out.argmax(-1) == y.numpy()).sum())
        total += len(y)
    return correct / total


def run_demo(out: str | Path = "slimkit-demo", *, samples: int = 10_000, teacher_epochs: int = 8,
             epochs: int = 6, widths=(0.25, 0.5, 0.75, 1.0), threads: int | None = None,
             progress: bool = True, seed: int = 0, log=print) -> dict:
    """Run the whole path once and write ``bundle/``, ``family/``, ``results.json`` and a plot to ``out``.

    Returns:
        ``{"rows": [DemoRow...], "teacher": {...}, "timings_s": {...}, "paths": {...}}``.
    """
    import torch

    from slimkit import compress, export, runtime

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()

    log(f"[1/5] MNIST-1D: generating {samples} samples offline (cached after the first run)")
    splits = compress.data.mnist1d(num_samples=samples, layout="channels", seed=seed)
    timings["data"] = time.perf_counter() - t0

    log(f"[2/5] teacher: residual 1-D CNN, {teacher_epochs} epochs")
    t = time.perf_counter()
    torch.manual_seed(seed)
    teacher = compress.zoo.build("rescnn")
    compress.fit(teacher, splits.train, splits.val, epochs=teacher_epochs, progress=progress, seed=seed)
    teacher_test = compress.evaluate(teacher, splits.test)
    timings["teacher"] = time.perf_counter() - t
    log(f"      test accuracy {teacher_test['accuracy']:.4f} ({compress.count_params(teacher):,} parameters, "
        f"{timings['teacher']:.0f} s)")

    log(f"[3/5] SortedNet: widths {tuple(widths)}, {epochs} epochs of sorted training")
    t = time.perf_counter()
    fam = compress.sortednet(teacher, train=splits.train, val=splits.val, widths=widths, epochs=epochs,
                             example_input=splits.example_input, progress=progress, seed=seed)
    if (out / "family").exists():  # the bundle below is replaced atomically; a saved family is not
        import shutil

        shutil.rmtree(out / "family")
    fam.save(out / "family")
    timings["sortednet"] = time.perf_counter() - t

    log("[4/5] export: one ONNX file per variant, parity-checked against onnxruntime")
    t = time.perf_counter()
    export.bundle(fam, splits.example_input, out / "bundle", overwrite=True)
    timings["export"] = time.perf_counter() - t

    log("[5/5] runtime: accuracy through ONNX Runtime and latency per variant")
    t = time.perf_counter()
    engine = runtime.load(out / "bundle", threads=threads)
    lat = engine.measure_latency(batches=(1, 64), repeats=50, save=True)
    rows = []
    for v in fam:
        rows.append(DemoRow(
            variant=v.name, params=v.params, macs=v.macs,
            acc_torch=compress.evaluate(v.model, splits.test)["accuracy"],
            acc_onnx=_onnx_accuracy(engine, v.name, splits.test),
            p50_ms_b1=lat[v.name][1]["p50_ms"], p50_ms_b64=lat[v.name][64]["p50_ms"]))
    timings["runtime"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0

    paths = {"bundle": str(out / "bundle"), "family": str(out / "family"),
             "results": str(out / "results.json")}
    plot = _plot(rows, out / "accuracy_vs_latency.png")
    if plot:
        paths["plot"] = str(plot)
    result = {"teacher": {"test": teacher_test, "params": compress.count_params(teacher)},
              "rows": [asdict(r) for r in rows], "timings_s": timings, "paths": paths,
              "settings": {"samples": samples, "teacher_epochs": teacher_epochs, "epochs": epochs,
                           "widths": list(widths), "seed": seed}}
    (out / "results.json").write_text(json.dumps(result, indent=2))
    result["rows"] = rows
    return result


def format_table(rows: list[DemoRow]) -> str:
    """The demo's table: one line per variant."""
    head = (f"{'variant':<9}{'params':>9}{'MACs':>11}{'acc torch':>11}{'acc onnx':>10}"
            f"{'p50 b=1':>10}{'p50 b=64':>10}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r.variant:<9}{r.params:>9,}{r.macs:>11,}{r.acc_torch:>11.4f}{r.acc_onnx:>10.4f}"
                     f"{r.p50_ms_b1:>8.3f}ms{r.p50_ms_b64:>8.3f}ms")
    return "\n".join(lines)


def _plot(rows: list[DemoRow], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None  # the CLI says how to get the plot
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for attr, label in (("p50_ms_b1", "batch 1"), ("p50_ms_b64", "batch 64")):
        xs = np.array([getattr(r, attr) for r in rows])
        ys = np.array([100 * r.acc_onnx for r in rows])
        ax.plot(xs, ys, marker="o", label=label)
        for r, x_, y_ in zip(rows, xs, ys):
            ax.annotate(r.variant, (x_, y_), textcoords="offset points", xytext=(4, -10), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("p50 latency, ONNX Runtime CPU (ms, log scale)")
    ax.set_ylabel("MNIST-1D test accuracy (%)")
    ax.set_title("SortedNet family: accuracy versus latency")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
