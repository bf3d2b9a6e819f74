"""The SNNK rows: one per part (zoo MLP with two teachers, zoo Transformer FFNs, feature kinds), each
merging its part into results.json (bench/core.py: the interface)."""

from __future__ import annotations

from pathlib import Path

from bench.core import Row, Timing, read

__all__ = ["ABOUT", "ROWS", "render", "summary"]

ABOUT = ("SNNK blocks (closed form, distilled, both) against truncated-SVD factorisations of the same Linears "
         "at equal trainable parameters and at equal MACs, fine-tuned with the same distillation, and the dense "
         "model given that distillation too; closed-form fit times; ONNX Runtime latency at batch 1 and 256.")

MEASURE = "bench.snnk.run:measure"
FULL_SEEDS = (0, 1, 2)


def _part(part: str, model: str, config: dict, *, quick: bool, samples: int, timing: dict) -> Row:
    seeds = config.get("seeds", [0] if quick else list(FULL_SEEDS))
    setting = (f"m {', '.join(map(str, config['features']))}; teacher {config['teacher_epochs']} epochs, "
               f"distillation {config['epochs']} epochs; seeds {', '.join(map(str, seeds))}")
    return Row("snnk", part + ("-quick" if quick else ""), f"{model}, MNIST-1D {samples:,} samples", setting, MEASURE,
               quick=quick, params={"part": part, "config": config, "seeds": [0] if quick else list(FULL_SEEDS),
                                    "samples": samples}, timing=timing)


def _timing(rounds: int, b1: int, b256: int) -> dict[str, Timing]:
    # calls per round sized so the slowest model's round lasts ~20 ms; as many warm-up calls
    return {"b1": Timing(b1, rounds, b1), "b256": Timing(b256, rounds, b256)}


MLP, MLP_STRONG, TRANSFORMER = ("zoo `mlp` (40-256-256-10), zoo-recipe teacher", "zoo `mlp`, well-trained teacher",
                                "zoo `transformer` (d 64, FFN 128, 2 layers), both FFNs")
ROWS = [
    _part("mlp", MLP, {"features": [64, 128, 256, 512], "epochs": 20, "lr": 1e-2, "teacher_epochs": 10},
          quick=False, samples=10_000, timing=_timing(25, 1500, 40)),
    # the zoo recipe leaves the MLP under-trained (~0.68); the same MLP trained 30 epochs at lr 1e-2 reaches ~0.80
    _part("mlp-strong", MLP_STRONG, {"zoo": "mlp", "features": [128, 256, 512, 1024], "epochs": 20, "lr": 1e-2,
                                     "teacher_epochs": 30, "teacher_lr": 1e-2, "seeds": [0, 1], "diagnostic": True},
          quick=False, samples=10_000, timing=_timing(25, 1000, 20)),
    _part("transformer", TRANSFORMER, {"features": [16, 32, 64], "epochs": 5, "lr": 2e-3, "teacher_epochs": 20,
                                       "seeds": [0]}, quick=False, samples=10_000, timing=_timing(25, 150, 1)),
    Row("snnk", "kinds", "zoo `mlp` head block, MNIST-1D 10,000 samples", "closed form, m 128, kinds relu/exp/cos/sin",
        MEASURE, params={"part": "kinds", "m": 128, "samples": 10_000, "teacher_epochs": 10}),
    _part("mlp", MLP, {"features": [32, 128], "epochs": 3, "lr": 1e-2, "teacher_epochs": 5},
          quick=True, samples=2_000, timing=_timing(5, 200, 10)),
    _part("mlp-strong", MLP_STRONG, {"zoo": "mlp", "features": [128], "epochs": 3, "lr": 1e-2, "teacher_epochs": 8,
                                     "teacher_lr": 1e-2, "seeds": [0], "diagnostic": True},
          quick=True, samples=2_000, timing=_timing(5, 200, 10)),
    _part("transformer", TRANSFORMER, {"features": [16], "epochs": 1, "lr": 2e-3, "teacher_epochs": 2, "seeds": [0]},
          quick=True, samples=2_000, timing=_timing(5, 20, 1)),
    Row("snnk", "kinds-quick", "zoo `mlp` head block, MNIST-1D 2,000 samples", "closed form, m 32, kinds relu/exp/cos/sin",
        MEASURE, quick=True, params={"part": "kinds", "m": 32, "samples": 2_000, "teacher_epochs": 5}),
]


def render(folder: Path) -> dict[str, str]:
    """``RESULTS.md`` from ``results.json``."""
    from bench.snnk.report import markdown

    doc = read(folder)
    return {"RESULTS.md": markdown(doc, json_path=folder / "results.json")} if doc else {}


def summary(folder: Path) -> list[str]:
    from bench.snnk.report import claims

    doc = read(folder)
    return [ln for ln in claims(doc) if ln.startswith("- ")] if doc else []
