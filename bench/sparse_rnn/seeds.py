"""``sparse_rnn/SEEDS.md``: several seed runs of the sparse RNN rows pooled into mean tables.

The full rows that differ only in their seed form a group (same cells, same fine-tuning epochs); each
group gets, per cell, the mean over its seeds and each seed's verdict on issue 4's targets.
"""

from __future__ import annotations

from bench.sparse_rnn.report import targets

__all__ = ["pooled", "markdown"]


def pooled(docs: list[dict], cell: str) -> list[str]:
    """Mean tables of ``cell`` over ``docs`` (one results file per seed)."""
    runs = [d["cells"][cell] for d in docs if cell in d["cells"]]
    seeds = [d["setup"]["seed"] for d in docs if cell in d["cells"]]
    if not runs:
        return []

    def mean(get) -> float:
        return 100 * sum(get(r) for r in runs) / len(runs)

    def per_seed(get) -> str:
        return ", ".join(f"{100 * (get(r) - r['dense']['test']):+.1f}" for r in runs)

    dense = mean(lambda r: r["dense"]["test"])
    dense_per_seed = ", ".join(f"{100 * r['dense']['test']:.1f}" for r in runs)
    tuning = docs[0]["setup"]["fine_tuning"].split(",")[0]
    out = [f"### {cell.upper()}: seeds {seeds}, {tuning}", "",
           f"Dense: {dense:.2f} % (per seed {dense_per_seed}).", "",
           "| sparsity | one-shot | gradual | torch.nn.utils.prune | gradual - dense (per seed) |",
           "| --- | --- | --- | --- | --- |"]
    for s in ("s0.50", "s0.80", "s0.90"):
        g = mean(lambda r, s=s: r["gradual"][s]["test"])
        out.append(f"| {s[1:]} | {mean(lambda r, s=s: r['oneshot'][s]['test']):.2f} | {g:.2f} | "
                   f"{mean(lambda r, s=s: r['torch_prune'][s]['test']):.2f} | {g - dense:+.2f} "
                   f"({per_seed(lambda r, s=s: r['gradual'][s]['test'])}) |")
    if all("u0.50" in r.get("structured", {}) for r in runs):
        u = mean(lambda r: r["structured"]["u0.50"]["test"])
        speed = ", ".join(f"{r['latency']['u0.50']['32']['speedup']:.2f}x" for r in runs)
        out += ["", f"Half the hidden units (u0.50): {u:.2f} % ({u - dense:+.2f} vs dense; per seed "
                    f"{per_seed(lambda r: r['structured']['u0.50']['test'])}); ONNX Runtime speed-up at batch 32 "
                    f"per seed: {speed}."]
    return out + ["", *verdicts(docs, cell), ""]


def verdicts(docs: list[dict], cell: str) -> list[str]:
    """How many seeds meet each target, worst seed named."""
    ts = [targets({cell: d["cells"][cell]})[cell] for d in docs if cell in d["cells"]]
    n = len(ts)

    def count(ok) -> str:
        return f"{sum(map(ok, ts))} of {n} seeds"

    worst80 = min(100 * (t["s0.80_within_1pt"]["gradual"] - t["s0.80_within_1pt"]["dense"]) for t in ts)
    worst_u = min(100 * (t["structured_half_within_2pt"]["test"] - t["structured_half_within_2pt"]["dense"]) for t in ts)
    speeds = [t["structured_half_1.8x_b32"]["speedup"] for t in ts if t["structured_half_1.8x_b32"]["speedup"]]
    return [f"Targets, {cell.upper()}: 80 % gradual within 1 point of dense on "
            f"{count(lambda t: t['s0.80_within_1pt']['met'])} (worst {worst80:+.1f}); half the units within 2 "
            f"points on {count(lambda t: t['structured_half_within_2pt']['met'])} (worst {worst_u:+.1f}) and "
            f">= 1.8x faster at batch 32 on {count(lambda t: t['structured_half_1.8x_b32']['met'])}"
            + (f" ({min(speeds):.2f}x-{max(speeds):.2f}x)" if speeds else "")
            + "; gradual at or above torch.nn.utils.prune at every sparsity on "
            f"{count(lambda t: all(e['gradual_met'] for e in t['ge_torch_prune'].values()))}."]


def markdown(groups: list[tuple[str, list[str], list[dict]]]) -> str:
    """``SEEDS.md`` from ``[(title, file names, docs)]``, one group per budget."""
    lines = ["# Sparse RNN pruning: several seeds", "",
             "`sparse_rnn/RESULTS.md` is one seed (0). These tables pool the seeds of each group of full rows "
             "(data split, dense model, pruning and fine-tuning all reseeded), test accuracy in %, every method "
             "given the same fine-tuning. Made by `python -m bench sparse_rnn --render` from the files named "
             "under each heading; `python -m bench sparse_rnn` reruns the rows (`--list` shows them).", ""]
    for title, names, docs in groups:
        lines += [f"## {title}", "", "Files: " + ", ".join(f"`{n}`" for n in names) + ".", ""]
        for cell in ("gru", "lstm"):
            lines += pooled(docs, cell)
    lines += ["One-shot magnitude pruning is the baseline's algorithm (`torch.nn.utils.prune.global_unstructured`, "
              "L1); it differs from it by at most a few test samples (different random state during fine-tuning).",
              ""]
    return "\n".join(lines)
