"""The sparse RNN rows: the zoo GRU and LSTM on MNIST-1D as a sequence (bench/core.py: the interface).

The full rows are the runs behind the committed files: seed 0 with both cells (the report), seeds 1 and
2 (pooled in SEEDS.md), and the LSTM with 8 fine-tuning epochs on seeds 0-2.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench.core import Row, Timing, read

__all__ = ["ABOUT", "ROWS", "render", "summary"]

ABOUT = ("`compress.sparse_rnn` one-shot and gradual (cubic) magnitude pruning at 50/80/90 % against "
         "`torch.nn.utils.prune` global L1 pruning with the same fine-tuning, random-graph masks, half the "
         "hidden units removed (structured), ONNX file sizes, and ONNX Runtime latency against the dense model "
         "at batch 1 and 32.")

MEASURE = "bench.sparse_rnn.run:measure"
MODEL = "zoo `gru` / `lstm` (hidden 128), MNIST-1D sequence"


def _timing(rounds: int) -> dict[str, Timing]:
    # calls per round: 400 // batch (at least 5), the same number of warm-up calls
    return {"b1": Timing(400, rounds, 400), "b32": Timing(12, rounds, 12)}


def _row(name: str, cells: tuple[str, ...], seed: int, epochs: int, rounds: int, file: str) -> Row:
    return Row("sparse_rnn", name, MODEL.replace("`gru` / `lstm`", " / ".join(f"`{c}`" for c in cells)) + " 10,000 samples",
               f"sparsity 0.5/0.8/0.9, {epochs} fine-tuning epochs per variant, seed {seed}", MEASURE, file=file,
               params={"samples": 10_000, "cells": cells, "seed": seed, "epochs": epochs, "dense_epochs": 0},
               timing=_timing(rounds))


ROWS = [
    _row("gru-lstm-seed0", ("gru", "lstm"), 0, 5, 30, "results.json"),
    _row("gru-lstm-seed1", ("gru", "lstm"), 1, 5, 10, "results_seed1.json"),
    _row("gru-lstm-seed2", ("gru", "lstm"), 2, 5, 10, "results_seed2.json"),
    *(_row(f"lstm-e8-seed{s}", ("lstm",), s, 8, 5, f"results_lstm_e8_seed{s}.json") for s in range(3)),
    Row("sparse_rnn", "gru-lstm-quick", MODEL + " 2,000 samples",
        "sparsity 0.5/0.8/0.9, dense 2 epochs, 1 fine-tuning epoch, seed 0", MEASURE, quick=True,
        params={"samples": 2_000, "cells": ("gru", "lstm"), "seed": 0, "epochs": 1, "dense_epochs": 2},
        timing=_timing(5)),
]


def _groups(folder: Path) -> list[tuple[str, list[str], list[dict]]]:
    """Full rows that differ only in their seed, with the files of theirs that exist in ``folder``."""
    groups: dict[tuple, list[str]] = {}
    for r in ROWS:
        if not r.quick and (folder / r.file).is_file():
            groups.setdefault((tuple(r.params["cells"]), r.params["epochs"]), []).append(r.file)
    return [(f"{' and '.join(c.upper() for c in cells)}, {epochs} fine-tuning epochs per variant", names,
             [json.loads((folder / n).read_text()) for n in names])
            for (cells, epochs), names in groups.items() if len(names) > 1]


def render(folder: Path) -> dict[str, str]:
    """``RESULTS.md`` from ``results.json``; ``SEEDS.md`` from the seed groups of full rows."""
    from bench.sparse_rnn.report import render as report
    from bench.sparse_rnn.seeds import markdown

    doc, out = read(folder), {}
    if doc:
        out["RESULTS.md"] = report(doc)
    groups = _groups(folder)
    if groups:
        out["SEEDS.md"] = markdown(groups)
    return out


def summary(folder: Path) -> list[str]:
    from bench.sparse_rnn.report import targets
    from bench.sparse_rnn.seeds import verdicts

    doc = read(folder)
    lines = []
    for cell, t in targets(doc["cells"] if doc else {}).items():
        a, b, c = t["s0.80_within_1pt"], t["structured_half_1.8x_b32"], t["structured_half_within_2pt"]
        speed = f"{b['speedup']:.2f}x" if b["speedup"] is not None else "not measured"
        lines.append(f"- {cell.upper()}, seed 0: 80 % gradual within 1 point of dense **{_met(a['met'])}** "
                     f"({100 * a['gradual']:.1f} vs {100 * a['dense']:.1f}); half the units >= 1.8x faster at batch "
                     f"32 **{_met(b['met'])}** ({speed}), within 2 points **{_met(c['met'])}** ({100 * c['test']:.1f})")
    for title, _names, docs in _groups(folder):
        for cell in ("gru", "lstm"):
            if all(cell in d["cells"] for d in docs):
                lines.append(f"- {title}, seeds pooled: " + verdicts(docs, cell)[0].removeprefix("Targets, "))
    return lines


def _met(ok: bool) -> str:
    return "met" if ok else "not met"
