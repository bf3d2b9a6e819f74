"""``boost/RESULTS.md``: the GBNN report, and the summary it is made from (means over seeds, targets)."""

from __future__ import annotations

import statistics as st

__all__ = ["summarise", "render"]


def sd(xs: list[float]) -> float:
    return st.stdev(xs) if len(xs) > 1 else 0.0


def summarise(doc: dict) -> dict:
    """Per dataset: mean accuracies over seeds, the gap to Adam, the curve over stages, the targets."""
    out = {}
    for name, res in doc["datasets"].items():
        curves = [r["gbnn"]["test_accuracy_by_stage"] for r in res["runs"]]
        mean_curve = [st.mean(c[i] for c in curves) for i in range(len(curves[0]))]
        full, half = mean_curve[-1], mean_curve[len(mean_curve) // 2 - 1]
        adam = st.mean(r["adam"]["test_accuracy"] for r in res["runs"])
        out[name] = {"gbnn": full, "gbnn_std": sd([c[-1] for c in curves]), "gbnn_half": half,
                     "adam": adam, "adam_std": sd([r["adam"]["test_accuracy"] for r in res["runs"]]),
                     "gap_vs_adam": full - adam, "half_loss": full - half, "curve": mean_curve,
                     "within_1pt_of_adam": full >= adam - 0.01, "half_loses_at_most_1pt": full - half <= 0.01,
                     "gbnn_seconds": st.mean(r["gbnn"]["seconds"] for r in res["runs"]),
                     "adam_seconds": st.mean(r["adam"]["seconds"] for r in res["runs"])}
    return out


def render(doc: dict) -> str:
    """``boost/RESULTS.md`` of one results file (every setting read from its ``setup``)."""
    s, setup = doc["summary"], doc["setup"]
    stages, units, defaults = setup["stages"], setup["units"], setup["boost_defaults"]
    yes = {True: "met", False: "**not met**"}
    lines = [
        "# GBNN: gradient-boosted heads (bench/boost/)", "",
        f"Produced by `{setup['command']}` on {setup['machine']} ({setup['torch_threads']} torch thread), "
        f"{setup['seconds']:.0f} s in all. Figures are mean test accuracy over seeds {setup['seeds']} "
        f"(MNIST-1D: {setup['mnist_seeds']}); each seed re-splits the scikit-learn data and re-seeds both heads.", "",
        f"Boosted head: `compress.boost(..., stages={stages}, units={units})`, library defaults otherwise "
        f"(shrinkage {defaults['shrinkage']}, subsample {defaults['subsample']}, {defaults['activation']}, L-BFGS "
        f"{defaults['max_iter']} iterations per stage, l2 {defaults['l2']}), no tuning. Adam head: the same "
        f"{stages * units}-unit tanh layer on the same standardised features, `fit` (AdamW, one-cycle), learning "
        f"rate picked per seed from {list(setup['adam_lrs'])} by validation accuracy.", "",
        "| dataset | features | test n | GBNN (all stages) | GBNN (half) | Adam head | GBNN - Adam | "
        "within 1 pt of Adam | half loses <= 1 pt | fit s (GBNN / Adam x3 lr) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in s.items():
        res = doc["datasets"][name]
        lines.append(f"| {name} | {res['features']} | {res['test_samples']} | {r['gbnn']:.4f} ± {r['gbnn_std']:.4f} | "
                     f"{r['gbnn_half']:.4f} | {r['adam']:.4f} ± {r['adam_std']:.4f} | {100 * r['gap_vs_adam']:+.2f} pt | "
                     f"{yes[r['within_1pt_of_adam']]} | {yes[r['half_loses_at_most_1pt']]} "
                     f"({100 * r['half_loss']:+.2f} pt) | {r['gbnn_seconds']:.1f} / {r['adam_seconds']:.1f} |")
    for name, res in doc["datasets"].items():
        if "teacher_test_accuracy" in res:
            lines += ["", f"{name}: the teacher with its own jointly trained linear head scores "
                          f"{res['teacher_test_accuracy']:.4f} on test."]
    lines += ["", "## Accuracy versus stages (mean test accuracy)", "",
              "| dataset | " + " | ".join(str(t) for t in range(1, stages + 1)) + " |",
              "|---|" + "---|" * stages]
    for name, r in s.items():
        lines.append(f"| {name} | " + " | ".join(f"{a:.4f}" for a in r["curve"]) + " |")
    lines += ["", "Hidden units at t stages: t x " + str(units) + ". One test sample is "
              + ", ".join(f"{name} {100 / doc['datasets'][name]['test_samples']:.2f} pt" for name in s)
              + ": on the small splits a 1-point target is within sampling noise of a single seed, hence the "
              "means over seeds. Raw per-seed figures: the JSON file.", ""]
    return "\n".join(lines)
