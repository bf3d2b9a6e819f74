"""``python -m bench <method|all> [--quick] [--out DIR] [--render]``: run rows of the table, write the JSON.

The table is the union of every ``bench/<method>/rows.py``'s ``ROWS`` (bench/core.py says what a row
is). For each method run, the runner

1. calls each selected row's measure and writes the row's detailed figures to ``<out>/<method>/<file>``;
2. merges the timed candidates into ``<out>/<method>/benchmark.json`` (pytest-benchmark's layout);
3. rewrites the method's Markdown (its ``render``) and the overview ``<out>/RESULTS.md``.

``--render`` does only step 3, from the JSON files already there: it measures nothing. Full rows write
into bench/ itself (the committed figures); ``--quick`` rows into bench/out/quick/ (git-ignored).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import sys
import time
from pathlib import Path
from types import ModuleType

from bench.common import atomic_write, log
from bench.core import Context, Row

__all__ = ["BENCH", "ORDER", "methods", "rows", "run", "render", "render_method", "write_overview", "main"]

BENCH = Path(__file__).resolve().parent
# the order of the table and of bench/RESULTS.md; any other bench/<name>/rows.py (n2n, gpu,
# shared_weights ...) joins after these, alphabetically, as soon as it exists
ORDER = ("sortednet", "sparse_rnn", "snnk", "boost", "quantize", "serve", "runtime", "n2n")


def methods() -> dict[str, ModuleType]:
    """``{method: its rows module}`` for every ``bench/<method>/rows.py`` on disk (found by path, so a
    plain module such as bench/n2n.py is never imported)."""
    found = sorted((p.parent.name for p in BENCH.glob("*/rows.py")),
                   key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))
    return {name: importlib.import_module(f"bench.{name}.rows") for name in found}


def rows(selected: list[str] | None = None, *, quick: bool | None = None, names: list[str] | None = None) -> list[Row]:
    """Rows of the table: of ``selected`` methods (None: all), quick or full (None: both), named ``names``."""
    found = methods()
    unknown = sorted(set(selected or ()) - set(found))
    if unknown:
        raise SystemExit(f"no benchmark {', '.join(unknown)}; there are: {', '.join(found)} (or 'all')")
    out = []
    for method, mod in found.items():
        if selected is None or method in selected:
            for row in mod.ROWS:
                if row.method != method:
                    raise ValueError(f"bench/{method}/rows.py lists row {row.id} of another method")
                if (quick is None or row.quick == quick) and (not names or row.name in names):
                    out.append(row)
    return out


def run(selected: list[Row], out: Path, *, command: str) -> dict[str, float | None]:
    """Run ``selected`` rows into ``out``; the wall seconds of each row (None: it failed; the others still
    run, and their figures are written)."""
    import traceback

    from bench import record

    by_method: dict[str, list[Row]] = {}
    for row in selected:
        by_method.setdefault(row.method, []).append(row)
    walls: dict[str, float | None] = {}
    for method, method_rows in by_method.items():
        folder = out / method
        ctx = Context(folder=folder, scratch=BENCH / "out" / "scratch" / method, command=command, log=log)
        folder.mkdir(parents=True, exist_ok=True)
        ctx.scratch.mkdir(parents=True, exist_ok=True)
        entries = []
        when = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        commit = record.commit_id()
        done = []
        for row in method_rows:
            log(f"== {row.id}: {row.model}; {row.setting}")
            t0 = time.perf_counter()
            try:
                result = row.function()(row, ctx)
            except Exception:  # one broken row must not cost the figures of the others
                walls[row.id] = None
                log(f"== {row.id}: FAILED after {time.perf_counter() - t0:.0f} s\n{traceback.format_exc()}")
                continue
            wall = walls[row.id] = time.perf_counter() - t0
            atomic_write(folder / row.file, json.dumps(result.doc, indent=1) + "\n")
            for m in result.measurements:
                e = record.entry(row, m, when=when, commit=commit)
                e["extra_info"]["row_wall_s"] = round(wall, 1)
                entries.append(e)
            done.append(row)
            log(f"== {row.id}: done in {wall:.0f} s -> {folder / row.file}")
        if done:
            record.merge(folder / "benchmark.json", entries, done, when=when)
        if method in methods():
            render_method(method, folder)
    return walls


def render_method(method: str, folder: Path) -> list[Path]:
    """Rewrite the Markdown of ``method`` in ``folder`` from its JSON files; the paths written."""
    written = []
    for name, text in methods()[method].render(folder).items():
        atomic_write(folder / name, text)
        written.append(folder / name)
    return written


def render(out: Path, selected: list[str] | None = None, *, quick: bool = False) -> list[Path]:
    """``--render``: every selected method's Markdown, then the overview; measures nothing."""
    written = []
    for method in methods():
        if (selected is None or method in selected) and (out / method).is_dir():
            written += render_method(method, out / method)
    return written + [write_overview(out, quick=quick)]


def write_overview(out: Path, *, quick: bool = False) -> Path:
    """``<out>/RESULTS.md``: the table of rows and every method's targets, from the files in ``out``."""
    from bench import overview

    atomic_write(out / "RESULTS.md", overview.markdown(out, methods(), quick=quick))
    return out / "RESULTS.md"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("what", nargs="?", default="all", help="a method (a folder of bench/ with a rows.py) or 'all'")
    p.add_argument("--quick", action="store_true", help="the quick rows: a smoke run (default out: bench/out/quick)")
    p.add_argument("--out", type=Path, help="where the method folders and RESULTS.md go (default: bench/ for "
                   "full rows, bench/out/quick for --quick)")
    p.add_argument("--row", action="append", metavar="NAME", help="only the row(s) of this name (repeatable)")
    p.add_argument("--render", action="store_true", help="rewrite the Markdown from the JSON files; measure nothing")
    p.add_argument("--list", action="store_true", help="print the table of rows and stop")
    p.add_argument("--torch-threads", type=int, default=1,
                   help="torch intra-op threads (default 1: two oversubscribe a busy 2-core box)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    selected = None if args.what == "all" else [args.what]
    out = args.out or (BENCH / "out" / "quick" if args.quick else BENCH)
    if args.list:
        from bench import overview

        print("\n".join(overview.rows_table(rows(selected, quick=args.quick or None, names=args.row))))
        return 0
    if args.render:
        for path in render(out, selected, quick=args.quick):
            log(f"wrote {path}")
        return 0
    todo = rows(selected, quick=args.quick, names=args.row)
    if not todo:
        raise SystemExit(f"no {'quick' if args.quick else 'full'} row matches {args.what} {args.row or ''}")
    os.environ.setdefault("OMP_NUM_THREADS", str(args.torch_threads))
    import torch

    torch.set_num_threads(args.torch_threads)
    argv = sys.argv[1:] if argv is None else argv
    t0 = time.perf_counter()
    walls = run(todo, out, command=" ".join(["python -m bench", *argv]))
    write_overview(out, quick=args.quick)
    failed = [k for k, v in walls.items() if v is None]
    log(f"all done in {time.perf_counter() - t0:.0f} s; per row: "
        + ", ".join(f"{k} {'FAILED' if v is None else f'{v:.0f} s'}" for k, v in walls.items()))
    per_method: dict[str, float] = {}
    for k, v in walls.items():
        per_method[k.split("/")[0]] = per_method.get(k.split("/")[0], 0.0) + (v or 0.0)
    log("per method: " + ", ".join(f"{k} {v:.0f} s" for k, v in per_method.items()))
    if failed:
        log(f"{len(failed)} row(s) failed: {', '.join(failed)} (tracebacks above)")
    return 1 if failed else 0
