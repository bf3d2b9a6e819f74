"""The row interface every benchmark plugs into: a :class:`Row` says what to measure, its ``measure``
function returns a :class:`Result`, and the runner (:mod:`bench.runner`) does the rest.

A method's folder ``bench/<method>/`` holds a ``rows.py`` with

* ``ROWS``: a list of :class:`Row` (quick rows for ``--quick``, full rows for the committed figures);
* ``render(folder) -> dict[str, str]``: the method's Markdown files, made from the JSON files in
  ``folder`` alone (it measures nothing);
* ``summary(folder) -> list[str]``: Markdown bullet lines for ``bench/RESULTS.md`` (the targets, met or
  not), also from the JSON files alone.

``rows.py`` imports nothing heavy: a row names its measure function as ``"module:function"``, imported
only when the row runs.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

__all__ = ["Timing", "Row", "Measurement", "Result", "Context", "read"]


@dataclass(frozen=True)
class Timing:
    """The fixed counts of one timed comparison: ``warmup`` calls per candidate (discarded), then
    ``rounds`` rounds, each running every candidate ``iterations`` times, interleaved (bench/speed.py)."""

    warmup: int
    rounds: int
    iterations: int

    def __post_init__(self) -> None:
        if self.warmup < 0 or self.rounds < 1 or self.iterations < 1:
            raise ValueError(f"{self!r}: needs warmup >= 0, rounds >= 1 and iterations >= 1")

    def to_dict(self) -> dict:
        return {"warmup": self.warmup, "rounds": self.rounds, "iterations": self.iterations}

    def __str__(self) -> str:
        return f"{self.warmup} + {self.rounds} x {self.iterations}"


@dataclass(frozen=True)
class Row:
    """One line of the benchmark table: one method, one model, one setting.

    Attributes:
        method: the folder under bench/ (``"sortednet"``).
        name: unique within the method (``"rescnn"``, ``"rescnn-quick"``); ``--row`` selects by it.
        model: what is compressed or served, in words.
        setting: the setting, in words (widths, epochs, seeds, batch, concurrency ...).
        measure: ``"module:function"``, called as ``function(row, ctx) -> Result``.
        params: every setting ``measure`` reads besides the timing (samples, epochs, seeds ...).
        timing: the fixed warm-up and repeat counts of each timed comparison, by name.
        quick: a ``--quick`` row (smaller data, fewer epochs and rounds: a smoke run whose figures mean
            nothing) or a full row (reproduces the committed figures).
        file: the JSON file of detailed figures the row writes in its method's folder.
    """

    method: str
    name: str
    model: str
    setting: str
    measure: str
    params: Mapping[str, Any] = field(default_factory=dict)
    timing: Mapping[str, Timing] = field(default_factory=dict)
    quick: bool = False
    file: str = "results.json"

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))
        object.__setattr__(self, "timing", MappingProxyType(dict(self.timing)))
        if ":" not in self.measure:
            raise ValueError(f"row {self.id}: measure must be 'module:function', got {self.measure!r}")

    @property
    def id(self) -> str:
        return f"{self.method}/{self.name}"

    def function(self) -> Callable[[Row, Context], Result]:
        module, _, name = self.measure.partition(":")
        return getattr(importlib.import_module(module), name)


@dataclass
class Measurement:
    """One timed candidate of a row: a pytest-benchmark entry.

    Attributes:
        name: the candidate (``"engine_variant"``).
        group: the comparison it belongs to, candidates and their baseline together (``"overhead-b1-t1"``).
        seconds: the samples, in seconds per call: one per round (the mean call of that round), or one
            per call when ``iterations`` is 1.
        iterations: calls behind each sample.
        timing: the name of the row's :class:`Timing` these counts come from.
        baseline: the candidate of the same group this one is compared with (None: it is the baseline).
        extra: anything else worth keeping beside the stats: ratios to the baseline (median and IQR of
            the per-round ratio), quality figures, the variant, the batch.
    """

    name: str
    group: str
    seconds: Sequence[float]
    iterations: int = 1
    timing: str | None = None
    baseline: str | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class Result:
    """What a row's measure returns: the whole content of ``row.file`` and its timed candidates."""

    doc: dict
    measurements: list[Measurement] = field(default_factory=list)


@dataclass
class Context:
    """What the runner hands a row's measure.

    Attributes:
        folder: where the method's files go (``bench/<method>/``, or ``<out>/<method>/``).
        scratch: a git-ignored folder for caches and logs of this method (``bench/out/scratch/<method>``).
        command: the command line of this run, for the reports.
        log: progress to stderr.
    """

    folder: Path
    scratch: Path
    command: str
    log: Callable[[str], None]

    def load(self, name: str) -> dict | None:
        """The JSON file ``name`` of this method's folder as it stands (rows that fill parts of one file
        merge into it), or None."""
        return read(self.folder, name)


def read(folder: Path, name: str = "results.json") -> dict | None:
    """The JSON file ``name`` in ``folder``, or None where there is none (for ``render`` and ``summary``)."""
    path = folder / name
    return json.loads(path.read_text()) if path.is_file() else None
