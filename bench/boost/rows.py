"""The GBNN rows: boosted heads on three scikit-learn tables and MNIST-1D ResCNN features
(bench/core.py: the interface)."""

from __future__ import annotations

from pathlib import Path

from bench.core import Row, read

__all__ = ["ABOUT", "ROWS", "render", "summary"]

ABOUT = ("`compress.boost` (10 stages x 8 tanh units, library defaults, no tuning) against the same-width head "
         "trained with Adam (learning rate picked on validation) on the same frozen features; accuracy versus "
         "the number of stages kept.")

MEASURE = "bench.boost.run:measure"
MODEL = "head on frozen features: breast cancer, wine, digits (raw), MNIST-1D zoo `rescnn` features"
TABLES = ("breast_cancer", "wine", "digits")

ROWS = [
    Row("boost", "heads", MODEL + " (teacher 4 and 1 epochs, 10,000 samples)",
        "10 stages x 8 units vs Adam (100 epochs tables, 30 MNIST-1D); seeds 0-9, MNIST-1D 0-2", MEASURE,
        params={"tabular": {t: 100 for t in TABLES}, "seeds": tuple(range(10)), "mnist_seeds": (0, 1, 2),
                "mnist": {"samples": 10_000, "teacher_epochs": [4, 1], "adam_epochs": 30}}),
    Row("boost", "heads-quick", MODEL + " (teacher 1 epoch, 2,000 samples)",
        "10 stages x 8 units vs Adam (5 epochs); seed 0", MEASURE, quick=True,
        params={"tabular": {t: 5 for t in TABLES}, "seeds": (0,), "mnist_seeds": (0,),
                "mnist": {"samples": 2_000, "teacher_epochs": [1], "adam_epochs": 5}}),
]


def render(folder: Path) -> dict[str, str]:
    """``RESULTS.md`` from ``results.json``."""
    from bench.boost.report import render as report

    doc = read(folder)
    return {"RESULTS.md": report(doc)} if doc else {}


def summary(folder: Path) -> list[str]:
    doc = read(folder)
    out = []
    for name, r in (doc["summary"] if doc else {}).items():
        out.append(f"- {name}: GBNN {100 * r['gbnn']:.2f} vs Adam {100 * r['adam']:.2f} ({100 * r['gap_vs_adam']:+.2f} "
                   f"points; within 1 point **{'met' if r['within_1pt_of_adam'] else 'not met'}**); half the stages "
                   f"{100 * -r['half_loss']:+.2f} points (at most 1 point lost **"
                   f"{'met' if r['half_loses_at_most_1pt'] else 'not met'}**)")
    return out
