"""Proxy check of bench/n2n.py: does the search's 1-epoch-distillation reward rank students the way the final
10-epoch distillation does? If it does not, no search (RL or random) can beat a good fixed point.

For each (budget, seed) it scores the uniform anchor and 40 random removal masks with random shapes, exactly
as the N2N search scores students (_Search with the bench's config: fill, 1 epoch, val reward), final-trains
up to 8 distinct students (the top 5 by search reward and 3 spread over the rest) with the bench's 10-epoch
distillation, and reports Spearman's rank correlation of search accuracy with final val and test accuracy.
Results go to "proxy_check" in bench/n2n_results.json.

    .venv/bin/python -W ignore bench/_n2n_diag.py 0.05:0 0.02:0      # budget:seed
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

torch.set_num_threads(1)
sys.path.insert(0, str(Path(__file__).resolve().parent))
import n2n as B  # noqa: E402


def check(teacher, s, ratio, seed, tp_) -> dict:
    t = time.perf_counter()
    cfg = B.N2NConfig(**B._config(ratio, seed))
    B.set_seed(seed)
    work, _ = B.sorted_copy(teacher, s.example_input)
    search = B.Search(work, s.example_input, s.train, s.val, cfg, False)
    search.anchor()
    rng = np.random.default_rng(2000 + seed)
    units = search.analysis.units
    for _ in range(40):
        remove = [u for u in units if rng.random() < 0.5]
        levels = [int(i) for i in rng.integers(0, len(cfg.ratios), len(search.shrink_rows(remove)))]
        search.score(search.fit_budget(remove, levels))
    valid = sorted((st for st in search.cache.values() if st.error is None and not math.isnan(st.accuracy)),
                   key=lambda st: -st.reward)
    rest = valid[5:]
    picks = valid[:5] + [rest[i] for i in np.unique(np.linspace(0, len(rest) - 1, 3).round().astype(int))
                         if rest]
    rows = []
    for st in picks:
        model = search.build(st.arch)
        B.distill(model, search.teacher, s, seed)
        m = B.measure(model, s, tp_)
        rows.append({"search_accuracy": st.accuracy, "search_reward": st.reward, "params": m["params"],
                     "final_val": m["val_accuracy"], "final_test": m["test_accuracy"],
                     "remove": st.arch["remove"], "channels": st.arch["channels"],
                     "anchor": st.arch == search.anchor().arch})
    sa = [r["search_accuracy"] for r in rows]
    return {"students": rows, "distinct_scored": len(valid), "wall_s": time.perf_counter() - t,
            "spearman_search_vs_final_val": float(spearmanr(sa, [r["final_val"] for r in rows])[0]),
            "spearman_search_vs_final_test": float(spearmanr(sa, [r["final_test"] for r in rows])[0]),
            "spearman_final_val_vs_test": float(spearmanr([r["final_val"] for r in rows],
                                                          [r["final_test"] for r in rows])[0])}


def main(cells):
    s = B.splits()
    teacher = B.load_teacher(s)
    tp_ = B.count_params(teacher)
    for ratio, seed in cells:
        k = f"{B.BUDGETS[ratio]}|seed{seed}"
        out = check(teacher, s, ratio, seed, tp_)
        with B.locked() as doc:
            doc.setdefault("proxy_check", {})[k] = out
        print(k, {a: b for a, b in out.items() if a != "students"}, flush=True)
        for r in out["students"]:
            print("  ", {a: b for a, b in r.items() if a not in ("channels",)}, flush=True)


if __name__ == "__main__":
    main([(float(eval(r)), int(sd)) for r, sd in (a.split(":") for a in sys.argv[1:])])
