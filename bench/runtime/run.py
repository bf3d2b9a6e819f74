"""The runtime row: runs the pytest-benchmark suite (test_runtime.py) in a pytest process with the row's
counts, and turns its JSON into the runner's measurements and a small results.json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.core import Context, Measurement, Result, Row
from bench.runtime.rows import ENV

__all__ = ["measure", "markdown"]

HERE = Path(__file__).resolve().parent


def _baseline(name: str, names: list[str]) -> str | None:
    """The baseline of a group: the plain session, width after width, or the widest variant."""
    for want in ("test_ort_raw_b1", "test_stay_on_each_b1"):
        if want in names:
            return want
    wide = [n for n in names if "w1.00" in n]
    return wide[0] if wide else None


def measure(row: Row, ctx: Context) -> Result:
    env = {**os.environ, ENV: json.dumps({k: t.to_dict() for k, t in row.timing.items()})}
    with tempfile.TemporaryDirectory(prefix="bench-runtime-") as tmp:
        out = Path(tmp) / "benchmark.json"
        cmd = [sys.executable, "-m", "pytest", str(HERE), "-q", "-p", "no:cacheprovider", "--benchmark-only",
               "--benchmark-json", str(out)]
        ctx.log("running " + " ".join(cmd[1:]))
        subprocess.run(cmd, cwd=HERE.parents[1], env=env, check=True)
        pb = json.loads(out.read_text())
    groups: dict[str, list[dict]] = {}
    for b in pb["benchmarks"]:
        groups.setdefault(b["group"], []).append(b)
    ms, table = [], {}
    for group, bs in groups.items():
        base = _baseline(group, [b["name"] for b in bs])
        base_median = next((b["stats"]["median"] for b in bs if b["name"] == base), None)
        table[group] = []
        for b in bs:
            ratio = b["stats"]["median"] / base_median if base_median and b["name"] != base else None
            table[group].append({"name": b["name"], "median_us": b["stats"]["median"] * 1e6, "ratio": ratio,
                                 "rounds": b["stats"]["rounds"], "iterations": b["stats"]["iterations"]})
            timing = "b64" if "b64" in group else "switch" if group.startswith("switch") else "b1"
            ms.append(Measurement(b["name"], group, b["stats"]["data"], iterations=b["stats"]["iterations"],
                                  timing=timing, baseline=None if b["name"] == base else base,
                                  extra={**b["extra_info"], "median_ratio_to_baseline": ratio,
                                         "note": "pytest-benchmark runs one benchmark after the other (not "
                                                 "interleaved): a ratio here is of medians timed apart"}))
    doc = {"command": ctx.command, "datetime": pb["datetime"], "pytest_benchmark": pb["version"], "quick": row.quick,
           "timing": {k: t.to_dict() for k, t in row.timing.items()}, "groups": table,
           "machine": {k: pb["machine_info"].get(k) for k in ("processor", "machine", "python_version", "release")}}
    return Result(doc=doc, measurements=ms)


def markdown(doc: dict) -> str:
    lines = ["# Engine.run latency: the pytest-benchmark suite", "",
             f"Produced by `{doc['command']}` on {doc['datetime']} (pytest-benchmark {doc['pytest_benchmark']}); "
             "per-call samples in `benchmark.json`. Counts (warm-up calls + rounds x iterations): "
             + ", ".join(f"{k} {t['warmup']} + {t['rounds']} x {t['iterations']}" for k, t in doc["timing"].items())
             + ". pytest-benchmark runs one benchmark after the other, so on a shared machine the figures drift "
             "between groups: compare within a group. The sortednet rows time the same comparisons interleaved.", ""]
    if doc.get("quick"):
        lines += ["**Quick smoke run: too few rounds for the figures to mean anything.**", ""]
    for group, rows in doc["groups"].items():
        lines += [f"## {group}", "", "| benchmark | median us | ratio to baseline | rounds x iterations |",
                  "| --- | ---: | ---: | --- |"]
        lines += [f"| `{r['name']}` | {r['median_us']:.1f} | "
                  f"{'baseline' if r['ratio'] is None else format(r['ratio'], '.3f')} | {r['rounds']} x {r['iterations']} |"
                  for r in rows]
        lines.append("")
    return "\n".join(lines)

