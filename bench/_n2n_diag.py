"""Diagnostic of bench/n2n.py: the same N2N cells, with the removal policy started at keep probability 0.5
instead of the library default 0.8 (policies/nets.py RemovalPolicy init_keep). The library is not modified;
the n2n module's RemovalPolicy name is rebound for this process only. Results go to "diagnostics" in
bench/n2n_results.json."""

from __future__ import annotations

import functools
import sys
import time
from pathlib import Path

import torch

torch.set_num_threads(1)
sys.path.insert(0, str(Path(__file__).resolve().parent))
import n2n as B  # noqa: E402

N = sys.modules["slimkit.compress.n2n"]
N.RemovalPolicy = functools.partial(N.RemovalPolicy, init_keep=0.5)


def main(cells):
    s = B.splits()
    teacher = B.load_teacher(s)
    tp_ = B.count_params(teacher)
    for ratio, seed in cells:
        k = f"init_keep0.5|{B.BUDGETS[ratio]}|seed{seed}|n2n"
        t = time.perf_counter()
        try:
            out, _ = B.run_n2n(teacher, s, ratio, seed, tp_)
        except Exception as e:
            out = {"error": f"{type(e).__name__}: {e}"}
        out.update(budget=ratio, ratio=B.BUDGETS[ratio], seed=seed, cell_wall_s=time.perf_counter() - t)
        with B.locked() as doc:
            doc.setdefault("diagnostics", {})[k] = out
        print(k, out.get("error") or f"test {out['test_accuracy']:.4f} params {out['params']}", flush=True)


if __name__ == "__main__":
    main([(float(eval(r)), int(sd)) for r, sd in (a.split(":") for a in sys.argv[1:])])
