"""onnxruntime latency of every finished cell of ``bench/n2n.py`` (run as ``bench/n2n.py latency``)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from types import ModuleType

import numpy as np
from _bench import raw_session

from slimkit.export import to_onnx


def latency(B: ModuleType, rounds: int = 5, runs: int = 100) -> None:
    """``B``: the ``bench/n2n.py`` module that is running (its splits, teacher, models and results file)."""
    s = B.splits()
    teacher = B.load_teacher(s)
    with B.locked() as doc:
        todo = [k for k, c in doc["cells"].items() if "error" not in c and "latency" not in c]
    tmp = Path(tempfile.mkdtemp(prefix="n2nlat"))

    def session(model, name):  # 1 intra-op thread, sequential: the engine backend's options
        return raw_session(to_onnx(model.eval(), s.example_input, tmp / f"{name}.onnx"), 1)

    t_sess = session(teacher, "teacher")
    inputs = {b: np.random.default_rng(0).standard_normal((b, 1, 40)).astype(np.float32) for b in (1, 64)}

    def timed(sess, x, n):
        name = sess.get_inputs()[0].name
        sess.run(None, {name: x})
        t = time.perf_counter()
        for _ in range(n):
            sess.run(None, {name: x})
        return (time.perf_counter() - t) / n * 1e3

    for k in todo:
        try:
            sess = session(B.load_model(k), k.replace("|", "_"))
        except Exception as e:
            with B.locked() as doc:
                doc["cells"][k]["latency"] = {"error": f"{type(e).__name__}: {e}"}
            continue
        res = {}
        for b, x in inputs.items():
            n = runs if b == 1 else max(10, runs // 5)
            st, tt = [], []
            for _ in range(rounds):  # interleaved with the teacher
                st.append(timed(sess, x, n))
                tt.append(timed(t_sess, x, n))
            res[f"b{b}_ms"] = float(np.median(st))
            res[f"b{b}_teacher_ms"] = float(np.median(tt))
            res[f"b{b}_speedup"] = float(np.median(tt) / np.median(st))
        with B.locked() as doc:
            doc["cells"][k]["latency"] = res
        print(k, res, flush=True)
