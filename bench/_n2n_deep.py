"""Does N2N's RL beat random search when the action space is too large to sample? A deeper teacher.

The default teacher has 4 removable blocks and 6 channel groups: 40 random removal masks cover its 16
masks. This teacher, ``zoo rescnn`` with channels (24, 48) and depths (4, 4) (about the same parameter
count), has 8 blocks (256 masks) and 10 groups. At a 30x params budget, 3 seeds: N2N with 24 iterations
per stage and the default policy lr (241 students) against random search with as many students (same
anchor, fill, rerank and final distillation as ``bench/n2n.py``), and uniform shrinking.

    .venv/bin/python bench/_n2n_deep.py prepare
    .venv/bin/python -W ignore bench/_n2n_deep.py run n2n:0 random:1 uniform:2 ...   # jobs, e.g. in 2 processes
    .venv/bin/python -W ignore bench/_n2n_deep.py run uniform:0@0.05 ...             # another params budget

Results go under ``deep_teacher`` in bench/n2n_results.json.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import n2n as B  # noqa: E402

from slimkit.compress import count_params  # noqa: E402

KW = {"channels": (24, 48), "depths": (4, 4)}
BUDGET, ITERATIONS = 1 / 30, B.LONG
PATH = B.WORK / "teacher_deep.pt"
# the benchmark's long-search settings (n2n_long / random_long), on this teacher
RUN = {"n2n": B.RUNNERS["n2n_long"], "random": B.RUNNERS["random_long"], "uniform": B.RUNNERS["uniform"]}


def prepare() -> None:
    _, info = B.train_teacher(B.splits(), PATH, **KW)
    info["spec"] = f"zoo.build('rescnn', channels={KW['channels']}, depths={KW['depths']}), fit(epochs=8, seed=0)"
    with B.locked() as doc:
        doc["deep_teacher"] = {"teacher": info, "budget": BUDGET, "iterations": ITERATIONS, "cells": {}}
    print(info, flush=True)


def _parse(job: str) -> tuple[str, int, float]:
    """``method:seed``, or ``method:seed@budget`` for a params budget other than BUDGET."""
    spec, _, budget = job.partition("@")
    method, _, seed = spec.partition(":")
    try:
        if method in RUN:
            return method, int(seed), float(budget or BUDGET)
    except ValueError:
        pass
    raise SystemExit(f"job {job!r}: write method:seed[@budget] with method in {sorted(RUN)}, "
                     "e.g. n2n:0 or uniform:1@0.05")


def run(jobs: list[str]) -> None:
    parsed = [_parse(job) for job in jobs]  # all checked before any training
    s = B.splits()
    teacher = B.load_teacher(s, PATH, **KW)
    tp_ = count_params(teacher)
    for job, (method, seed, budget) in zip(jobs, parsed):
        t = time.perf_counter()
        out, _ = RUN[method](teacher, s, budget, seed, tp_)
        out.update(method=method, seed=seed, budget=budget, cell_wall_s=time.perf_counter() - t)
        with B.locked() as doc:
            doc["deep_teacher"]["cells"][job] = out
        print(job, f"test {out['test_accuracy']:.4f} val {out['val_accuracy']:.4f} params {out['params']} "
                   f"wall {out['cell_wall_s']:.0f}s", flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["prepare"]:
        prepare()
    elif sys.argv[1:2] == ["run"]:
        run(sys.argv[2:])
    else:
        raise SystemExit(__doc__)
