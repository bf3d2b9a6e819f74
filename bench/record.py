"""pytest-benchmark's JSON layout for the runner's measurements, so ``pytest-benchmark compare`` reads them.

One file per method folder (``benchmark.json``): ``machine_info``, ``commit_info``, ``benchmarks``,
``datetime``, ``version``, as ``pytest --benchmark-json`` writes them. Each :class:`~bench.core.Measurement`
becomes one entry whose ``stats`` are computed by pytest-benchmark's own ``Stats`` class (so min, IQR,
outliers and ops mean exactly what they mean there); the row's identity, its fixed counts, the ratio
to the baseline and the quality figures go in ``extra_info``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

from pytest_benchmark import __version__ as PB_VERSION
from pytest_benchmark.plugin import pytest_benchmark_generate_machine_info
from pytest_benchmark.stats import Stats
from pytest_benchmark.utils import get_commit_info

from bench.common import atomic_write
from bench.core import Measurement, Row

__all__ = ["entry", "document", "merge", "machine_info", "commit_id"]


def _jsonable(value):
    return json.loads(json.dumps(value, default=lambda o: list(o) if isinstance(o, (tuple, set)) else str(o)))


def machine_info() -> dict:
    """pytest-benchmark's machine_info plus what the shared box needs said: usable cores, the load."""
    info = pytest_benchmark_generate_machine_info()
    info["usable_cores"] = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info["loadavg"] = list(os.getloadavg())
    return info


def entry(row: Row, m: Measurement, *, when: str, commit: str) -> dict:
    """One ``benchmarks[]`` item for measurement ``m`` of ``row``."""
    stats = Stats()
    for s in m.seconds:
        stats.update(float(s))
    out = stats.as_dict()
    out["iterations"] = m.iterations
    out["data"] = [float(s) for s in m.seconds]  # as pytest --benchmark-json keeps them
    timing = row.timing.get(m.timing) if m.timing else None
    return {
        "group": f"{row.id}/{m.group}",
        "name": f"{m.name}[{row.name}]",
        "fullname": f"bench/{row.method}::{row.name}::{m.group}::{m.name}",
        "params": _jsonable({**row.params, "timing": m.timing}),
        "param": row.name,
        "extra_info": _jsonable({"row": row.id, "model": row.model, "setting": row.setting, "quick": row.quick,
                                 "baseline": m.baseline, "datetime": when, "commit": commit, **m.extra}),
        "options": {"timer": "time.perf_counter", "disable_gc": True, "interleaved": True,
                    **({"timing": timing.to_dict()} if timing else {})},
        "stats": out,
    }


def document(entries: list[dict], *, when: str | None = None) -> dict:
    """A whole pytest-benchmark file around ``entries``."""
    return {"machine_info": machine_info(), "commit_info": get_commit_info("slimkit"), "benchmarks": entries,
            "datetime": when or dt.datetime.now(dt.timezone.utc).isoformat(), "version": PB_VERSION}


def merge(path: Path, entries: list[dict], rows: list[Row], *, when: str) -> dict:
    """Write ``entries`` into the pytest-benchmark file at ``path``: entries of other rows already there
    stay (each records its own date and commit in ``extra_info``), those of ``rows`` are replaced."""
    ran = {r.id for r in rows}
    kept = []
    if path.is_file():
        kept = [b for b in json.loads(path.read_text())["benchmarks"] if b.get("extra_info", {}).get("row") not in ran]
    doc = document(kept + entries, when=when)
    atomic_write(path, json.dumps(doc, indent=1) + "\n")
    return doc


def commit_id() -> str:
    """The commit the run measured (``+dirty`` with uncommitted changes), as pytest-benchmark reads it."""
    info = get_commit_info("slimkit")
    return info["id"] + ("+dirty" if info.get("dirty") else "")
