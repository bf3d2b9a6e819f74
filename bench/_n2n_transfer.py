"""Transfer check of bench/n2n.py: N2N policies trained on a shallower ResCNN (depths (1, 1)) start a search on
the default teacher (depths (2, 2)), versus a search from freshly initialised policies; the per-iteration
rewards are logged by wrapping _Search.score (the library is not modified)."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

torch.set_num_threads(1)

from slimkit.compress import n2n  # noqa: E402

N = sys.modules["slimkit.compress.n2n"]  # the module (slimkit.compress.n2n the attribute is the function)

sys.path.insert(0, str(Path(__file__).resolve().parent))
import n2n as B  # noqa: E402

OLD_LR = B.N2N_KW["policy_lr"]  # 0.003, the library default until 2026-11-27

TRACE: list[float] = []
_orig = N.Search.score


def _score(self, arch):
    st = _orig(self, arch)
    TRACE.append(float(st.reward))
    return st


N.Search.score = _score


def search(teacher, s, iterations=8, seed=0, policy_lr=OLD_LR, **kw):
    TRACE.clear()
    t = time.perf_counter()
    n2n(teacher, train=s.train, val=s.val, budget={"params": 0.05}, iterations=iterations, rollouts=5, epochs=1,
        final_epochs=1, max_variants=1, progress=False, seed=seed, ratios=tuple(B.N2N_KW["ratios"]),
        example_input=s.example_input, policy_lr=policy_lr, **kw)
    per_iter = [TRACE[i:i + 5] for i in range(0, len(TRACE), 5)]
    return {"wall_s": time.perf_counter() - t, "rewards": list(TRACE),
            "iter_mean": [float(np.mean(r)) for r in per_iter],
            "best_so_far": [float(np.max(TRACE[:i + 5])) for i in range(0, len(TRACE), 5)]}


def first_reaching(best_so_far: list[float], level: float) -> int | None:
    """1-based index of the first batch of 5 rollouts whose best-so-far reward reaches ``level``."""
    return next((i + 1 for i, b in enumerate(best_so_far) if b >= level - 1e-12), None)


def main(seeds=(0, 1, 2), shallow_iterations=40, policy_lr=OLD_LR):
    """For each seed: train policies on the shallow teacher for ``shallow_iterations`` per stage, then run the
    same 8-iteration search on the deep teacher from those policies and from fresh ones (same seed, so the
    same data order and the same anchor), and compare when each first reaches the from-scratch search's
    final best reward and the mean reward over its rollouts. Results go under ``transfer`` (policy lr 0.003,
    the library default until 2026-11-27) or ``transfer_plr<lr>``, merged per seed."""
    s = B.splits()
    teacher = B.load_teacher(s)
    shallow, info = B.train_teacher(s, depths=(1, 1))
    out = {"shallow_teacher_test_accuracy": info["test_accuracy"], "budget": 0.05,
           "settings": f"shallow search {shallow_iterations} iterations x 5 rollouts per stage; deep searches "
                       "8 iterations x 5 rollouts per stage; epochs 1; params budget 0.05", "policy_lr": policy_lr}
    name = "transfer" if policy_lr == OLD_LR else f"transfer_plr{policy_lr}"
    for seed in seeds:
        ck = Path(tempfile.mkdtemp(prefix="n2n-shallow"))
        row = {"shallow_search": search(shallow, s, iterations=shallow_iterations, seed=seed, checkpoint=ck,
                                        policy_lr=policy_lr),
               "deep_from_transfer": search(teacher, s, seed=seed, policies=ck, policy_lr=policy_lr),
               "deep_from_scratch": search(teacher, s, seed=seed, policy_lr=policy_lr)}
        level = row["deep_from_scratch"]["best_so_far"][-1]
        row["level"] = level
        for k in ("deep_from_transfer", "deep_from_scratch"):
            row[k]["first_reaching_level"] = first_reaching(row[k]["best_so_far"], level)
            row[k]["mean_reward"] = float(np.mean(row[k]["rewards"]))
        print(seed, {k: {kk: row[k][kk] for kk in ("first_reaching_level", "mean_reward", "wall_s")}
                     for k in ("deep_from_transfer", "deep_from_scratch")}, f"level {level:.3f}", flush=True)
        with B.locked() as doc:  # per seed, so several processes can share the seeds
            stored = doc.setdefault(name, {})
            stored.update(out)
            stored.setdefault("seeds", {})[str(seed)] = row


if __name__ == "__main__":
    # _n2n_transfer.py [policy_lr [seed ...]]
    lr = float(sys.argv[1]) if len(sys.argv) > 1 else OLD_LR
    main(seeds=tuple(int(a) for a in sys.argv[2:]) or (0, 1, 2), policy_lr=lr)
