"""One ``/metrics`` for several server processes (``slimkit serve --workers N``).

Each worker process keeps its own :class:`~slimkit.runtime.metrics.ServerMetrics` (no locks, no shared
memory on the hot path) and writes a JSON snapshot of it to a directory the supervisor made, every
``period`` seconds and on every scrape. Whichever worker answers ``GET /metrics`` merges all snapshots, so
a scrape sees the whole server whatever process the kernel hands it to. Counters and histograms are
summed over every worker that ever wrote, including ones that have exited (a counter must not go
down when a process is replaced). Gauges merge by their ``multiprocess`` mode, as in the Prometheus
Python client's multiprocess mode: ``livesum`` (sum over live workers), ``max``, or ``liveall`` (one
series per live worker, labelled ``worker="<pid>"``).

Other workers' counts are at most ``period`` seconds old; the answering worker's own are current.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from .metrics import Counter, Gauge, Histogram, Registry, ServerMetrics

__all__ = ["SharedMetrics"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        pass
    return True


class SharedMetrics:
    """Snapshot this process's metrics into ``directory`` and render the merge of every process's.

    Args:
        directory: a directory shared by the worker processes (made by the supervisor, removed by it).
        metrics: this process's metrics.
        period: seconds between background snapshots (:meth:`run`).
    """

    def __init__(self, directory: str | os.PathLike, metrics: ServerMetrics, period: float = 1.0):
        self.dir = Path(directory)
        self.metrics = metrics
        self.period = period
        self.pid = os.getpid()

    @property
    def _path(self) -> Path:
        return self.dir / f"{self.pid}.json"

    # -- this process ------------------------------------------------------------------------------------
    def snapshot(self) -> dict:
        """This process's families as JSON-able data (labels as lists)."""
        self.metrics.refresh()
        out = {}
        for f in self.metrics.registry.families:
            if isinstance(f, Histogram):
                out[f.name] = [[list(k), counts, total] for k, (counts, total) in f.series.items()]
            elif isinstance(f, Counter):  # and Gauge
                out[f.name] = [[list(k), v] for k, v in f.values.items()]
        return out

    def write(self, snapshot: dict | None = None) -> None:
        """Write ``snapshot`` (default: a fresh one) atomically: a reader never sees half a file."""
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.snapshot() if snapshot is None else snapshot))
        os.replace(tmp, self._path)

    async def run(self) -> None:
        """Write a snapshot every ``period`` seconds (a lifespan task; cancel it to stop)."""
        while True:
            try:
                self.write()
            except OSError:  # the directory went away: the supervisor is shutting down
                return
            await asyncio.sleep(self.period)

    # -- every process -----------------------------------------------------------------------------------
    def _snapshots(self) -> dict[int, dict]:
        """Every other process's last snapshot, by pid."""
        snaps = {}
        for p in self.dir.glob("*.json"):
            if p == self._path:
                continue
            try:
                snaps[int(p.stem)] = json.loads(p.read_text())
            except (ValueError, OSError):  # a name that is not ours, or a file replaced under us
                continue
        return snaps

    def render(self) -> bytes:
        """The Prometheus text of all workers merged (this one's snapshot refreshed first)."""
        own = self.snapshot()
        self.write(own)
        snaps = self._snapshots()
        snaps[self.pid] = own  # its file, just written, is not read back
        live = {pid for pid in snaps if pid == self.pid or _alive(pid)}
        merged = Registry()
        for f in self.metrics.registry.families:
            series = {pid: s.get(f.name, []) for pid, s in snaps.items()}
            if isinstance(f, Histogram):
                hist = merged.add(Histogram(f.name, f.help, f.label_names, f.bounds))
                for rows in series.values():
                    for labels, counts, total in rows:
                        cur = hist.series.setdefault(tuple(labels), [[0] * len(counts), 0.0])
                        cur[0] = [a + b for a, b in zip(cur[0], counts)]
                        cur[1] += total
            elif isinstance(f, Gauge):
                mode = f.multiprocess
                names = (*f.label_names, "worker") if mode == "liveall" else f.label_names
                gauge = merged.add(Gauge(f.name, f.help, names))
                for pid, rows in series.items():
                    if pid not in live and mode != "max":
                        continue
                    for labels, v in rows:
                        if mode == "liveall":
                            gauge.set(v, (*labels, str(pid)))
                        elif mode == "max":
                            gauge.set(max(gauge.values.get(tuple(labels), v), v), tuple(labels))
                        else:
                            gauge.inc(tuple(labels), v)
            else:
                counter = merged.add(Counter(f.name, f.help, f.label_names))
                for rows in series.values():
                    for labels, v in rows:
                        counter.inc(tuple(labels), v)
        return merged.render()
