"""Transfer check of bench/n2n.py: N2N policies trained on a shallower ResCNN (depths (1, 1)) start a search on
the default teacher (depths (2, 2)), versus a search from freshly initialised policies; the per-iteration
rewards are logged by wrapping _Search.score (the library is not modified)."""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

torch.set_num_threads(1)

from slimkit.compress import evaluate, fit, n2n, zoo  # noqa: E402

N = sys.modules["slimkit.compress.n2n"]  # the module (slimkit.compress.n2n the attribute is the function)

sys.path.insert(0, str(Path(__file__).resolve().parent))
import n2n as B  # noqa: E402

TRACE: list[float] = []
_orig = N._Search.score


def _score(self, arch):
    st = _orig(self, arch)
    TRACE.append(float(st.reward))
    return st


N._Search.score = _score


def search(teacher, s, **kw):
    TRACE.clear()
    t = time.perf_counter()
    n2n(teacher, train=s.train, val=s.val, budget={"params": 0.05}, iterations=8, rollouts=5, epochs=1,
        final_epochs=1, max_variants=1, progress=False, seed=0, ratios=tuple(B.N2N_KW["ratios"]),
        example_input=s.example_input, **kw)
    per_iter = [TRACE[i:i + 5] for i in range(0, len(TRACE), 5)]
    return {"wall_s": time.perf_counter() - t, "rewards": list(TRACE),
            "iter_mean": [float(np.mean(r)) for r in per_iter],
            "best_so_far": [float(np.max(TRACE[:i + 5])) for i in range(0, len(TRACE), 5)]}


def main():
    s = B.splits()
    teacher = B.load_teacher(s)
    torch.manual_seed(0)
    shallow = zoo.build("rescnn", depths=(1, 1))
    fit(shallow, s.train, epochs=8, seed=0, progress=False)
    ck = Path(tempfile.mkdtemp(prefix="n2n-shallow"))
    out = {"shallow_teacher_test_accuracy": evaluate(shallow, s.test)["accuracy"],
           "budget": 0.05, "settings": "iterations 8, rollouts 5, epochs 1, seed 0, params budget 0.05"}
    out["shallow_search"] = search(shallow, s, checkpoint=ck)
    out["deep_from_transfer"] = search(teacher, s, policies=ck)
    out["deep_from_scratch"] = search(teacher, s)
    with B.locked() as doc:
        doc["transfer"] = out
    print(json.dumps({k: (v if not isinstance(v, dict) else {kk: vv for kk, vv in v.items() if kk != "rewards"})
                      for k, v in out.items()}, indent=1))


if __name__ == "__main__":
    main()
