"""Pool several seed runs of ``bench/sparse_rnn.py`` into mean tables (Markdown on stdout).

    .venv/bin/python bench/_sparse_rnn_seeds.py bench/sparse_rnn_results.json bench/sparse_rnn_results_seed1.json ...
"""

from __future__ import annotations

import json
import sys


def pooled(docs: list[dict], cell: str) -> list[str]:
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
    return out + [""]


def main(paths: list[str]) -> int:
    docs = [json.loads(open(p).read()) for p in paths]
    for cell in ("gru", "lstm"):
        print("\n".join(pooled(docs, cell)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
