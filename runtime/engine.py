"""``Engine``: every variant of a bundle loaded once, one picked per call by budget, name or latency.

Selection rules (one selector per call; none serves the largest variant):

* ``budget=b``: the largest variant whose MACs are at most ``b`` x the largest variant's MACs
  (``b`` in (0, 1]; the shared rule in :mod:`slimkit.runtime.budget`).
* ``variant="w0.50"``: that variant.
* ``latency_ms=t``: the largest variant whose measured p50 latency at batch 1 on this engine's
  ``"<backend>/<device>"`` is at most ``t``. Latencies come from the manifest (``slimkit bench``);
  variants with no entry for this backend/device are measured once, on the first ``latency_ms`` call
  (see :meth:`Engine.measure_latency`), and kept in memory.

When nothing fits, :class:`BudgetError` is raised unless ``fallback="smallest"``.

Inputs: a bundle with one input takes a numpy array; one with several (``input_ids`` and
``attention_mask``) takes ``{name: array}`` with every input the manifest names (checked in Python before
the call: missing or unknown names and dims that disagree across inputs raise :class:`InputError`).

Speed: selections are cached (budget-only and name-only calls in one dict lookup each), and the input
is not checked in Python before the call: ONNX Runtime validates dtype, rank and fixed dims in C++,
and only when a call fails does the engine compare ``x`` with the manifest's input spec to raise an
:class:`InputError` that names both. Backends that do not validate (``checks_inputs = False``) get the
Python check before every call.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .backends import Backend, open_backends
from .budget import FALLBACKS, pick_by_budget
from .errors import BudgetError, ConfigError, VariantError
from .feeds import check_array, check_feed, example_feed, tile
from .manifest import Manifest, read_manifest, update_latency

__all__ = ["Engine", "VariantInfo", "load"]

_CACHE_MAX = 4096  # distinct selector tuples kept; a controller sending ever-new float budgets resets it


@dataclass(frozen=True)
class VariantInfo:
    """What the engine knows about one variant (``latency`` as in the manifest's latency schema)."""

    name: str
    params: int
    macs: int
    metrics: dict[str, float] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    latency: dict[str, Any] = field(default_factory=dict)


class Engine:
    """Serve a bundle's variants; build one with :func:`load`.

    Args:
        manifest: the bundle's validated manifest.
        backends: one loaded backend per variant, in ``manifest.variants`` order.
        bundle_dir: where the bundle lives (used to save measured latency).
        threads: the intra-op thread count the backends use (recorded with latency).

    Example:
        >>> eng = runtime.load("out/bundle")  # doctest: +SKIP
        >>> y = eng.run(x, budget=0.5); eng.last
        'w0.50'
    """

    def __init__(self, manifest: Manifest, backends: Sequence[Backend], *,
                 bundle_dir: str | os.PathLike | None = None, threads: int | None = None):
        if len(backends) != len(manifest.variants):
            raise ConfigError(f"need one backend per variant ({len(manifest.variants)}), got {len(backends)}")
        self.manifest = manifest
        self.bundle_dir = Path(bundle_dir) if bundle_dir is not None else None
        self.threads = threads
        self.backend = backends[0].name
        self.device = backends[0].device
        self.latency_key = f"{self.backend}/{self.device}"
        self.inputs = list(manifest.inputs)
        self.input_spec = manifest.inputs[0]
        self._backends = list(backends)
        self._names = manifest.names
        self._macs = [v.macs for v in manifest.variants]
        self._infos = {v.name: VariantInfo(v.name, v.params, v.macs, dict(v.metrics), dict(v.config),
                                           {k: dict(r) for k, r in v.latency.items()})
                       for v in manifest.variants}
        # per variant: (fn, output_names, input_name, name) with fn(output_names, {input_name: x}, None)
        # returning all outputs; prebuilt so a call does no lookups beyond a dict and a tuple
        self._entries = {v.name: _entry(self, be, v.name)
                         for v, be in zip(manifest.variants, backends, strict=True)}
        self._cache: dict[tuple, tuple] = {}  # (budget, variant, latency_ms, fallback) -> entry
        self._by_budget: dict[Any, tuple] = {}  # budget (None: largest) -> entry, for the hot path
        self._local = threading.local()
        self._measure_lock = threading.Lock()
        if len(self.inputs) > 1:
            self._outputs = self._outputs_feed  # type: ignore[method-assign,assignment]  # a dict, checked first

    # -- hot path -------------------------------------------------------------------------------------
    def run(self, x: np.ndarray | dict[str, np.ndarray], *, budget: float | None = None,
            variant: str | None = None, latency_ms: float | None = None,
            fallback: str | None = None) -> np.ndarray:
        """Run one batch on the selected variant and return its first output.

        Args:
            x: a numpy array matching ``engine.input_spec`` (dtype, rank, fixed dims); for a bundle with
                several inputs, ``{name: array}`` with every input of ``engine.inputs``.
            budget: fraction of the largest variant's MACs in (0, 1].
            variant: a variant name.
            latency_ms: p50 latency target at batch 1 for this backend/device.
            fallback: ``"smallest"`` serves the smallest variant when nothing fits the budget.

        Returns:
            The first output. ``engine.last`` then names the variant that served this thread.

        Raises:
            BudgetError, VariantError, ConfigError: a bad selector.
            InputError: ``x`` has the wrong dtype, rank or a wrong fixed dim; an input is missing or unknown.
        """
        return self._outputs(x, budget, variant, latency_ms, fallback)[0]

    def _outputs(self, x: Any, budget: Any, variant: Any, latency_ms: Any, fallback: Any) -> list[np.ndarray]:
        # common cases first, each one dict lookup; anything else goes through the tuple-keyed cache
        if variant is None and latency_ms is None and fallback is None and budget is not True:
            try:
                entry = self._by_budget[budget]
            except (KeyError, TypeError):
                entry = self._select_entry(budget, None, None, None)
        elif budget is None and latency_ms is None and fallback is None:
            try:
                entry = self._entries[variant]
            except (KeyError, TypeError):
                entry = self._select_entry(None, variant, None, None)
        else:
            entry = self._select_cached(budget, variant, latency_ms, fallback)
        fn, outputs, key, name = entry
        try:
            out = fn(outputs, {key: x}, None)
        except Exception:
            if isinstance(x, dict):  # {name: array} serves a single-input bundle too
                return self._outputs_feed(x, budget, variant, latency_ms, fallback)
            self._check_input(x)  # the backend validates in C; say what was wrong in slimkit terms
            raise
        self._local.last = name
        return out

    def _outputs_feed(self, feed: Any, budget: Any, variant: Any, latency_ms: Any, fallback: Any) -> list[np.ndarray]:
        """:meth:`_outputs` for ``{name: array}`` (every bundle with several inputs): checked, then run."""
        check_feed(self.inputs, feed)
        fn, outputs, key, name = self._select_cached(budget, variant, latency_ms, fallback)
        out = fn(outputs, feed if len(self.inputs) > 1 else {key: feed[self.input_spec.name]}, None)
        self._local.last = name
        return out

    def run_all(self, x: np.ndarray | dict[str, np.ndarray], *, budget: float | None = None, variant: str | None = None,
                latency_ms: float | None = None, fallback: str | None = None) -> list[np.ndarray]:
        """Like :meth:`run` (same selectors and errors), returning every output of the model in order."""
        return self._outputs(x, budget, variant, latency_ms, fallback)

    def run_with_info(self, x: np.ndarray | dict[str, np.ndarray], **selector: Any) -> tuple[np.ndarray, VariantInfo]:
        """Like :meth:`run`, also returning the :class:`VariantInfo` of the variant that served it."""
        y = self.run(x, **selector)
        return y, self._infos[self._local.last]

    @property
    def last(self) -> str | None:
        """Name of the variant that served the calling thread's last :meth:`run` (None before any)."""
        return getattr(self._local, "last", None)

    # -- selection --------------------------------------------------------------------------------------
    def select(self, *, budget: float | None = None, variant: str | None = None,
               latency_ms: float | None = None, fallback: str | None = None) -> VariantInfo:
        """The variant :meth:`run` would serve for these arguments (same rules and errors)."""
        return self._infos[self._select_cached(budget, variant, latency_ms, fallback)[3]]

    def _select_cached(self, budget: Any, variant: Any, latency_ms: Any, fallback: Any) -> tuple:
        if budget is True or latency_ms is True:  # True == 1 would hit the cached entry of 1
            return self._select_entry(budget, variant, latency_ms, fallback)
        try:
            return self._cache[budget, variant, latency_ms, fallback]
        except (KeyError, TypeError):
            return self._select_entry(budget, variant, latency_ms, fallback)

    def _select_entry(self, budget: Any, variant: Any, latency_ms: Any, fallback: Any) -> tuple:
        given = [k for k, v in (("budget", budget), ("variant", variant), ("latency_ms", latency_ms))
                 if v is not None]
        if len(given) > 1:
            raise ConfigError(f"pass at most one of budget=, variant=, latency_ms=; got {', '.join(given)}")
        if fallback not in FALLBACKS:
            raise ConfigError(f"fallback must be one of {FALLBACKS}, got {fallback!r}")
        if variant is not None:
            if fallback is not None:
                raise ConfigError("fallback= applies to budget= and latency_ms=, not to variant=")
            if not isinstance(variant, str) or variant not in self._entries:
                raise VariantError(f"no variant named {variant!r}; this bundle has {self._names}")
            name = variant
        elif latency_ms is not None:
            name = self._pick_by_latency(latency_ms, fallback)
        elif budget is not None:
            name = self._names[pick_by_budget(self._macs, budget, fallback=fallback, names=self._names)]
        else:
            name = self._names[-1]
        entry = self._entries[name]
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
            self._by_budget.clear()
        self._cache[budget, variant, latency_ms, fallback] = entry
        if variant is None and latency_ms is None and fallback is None:
            self._by_budget[budget] = entry
        return entry

    def _pick_by_latency(self, latency_ms: Any, fallback: str | None) -> str:
        if isinstance(latency_ms, bool) or not isinstance(latency_ms, (int, float)) or not latency_ms > 0:
            raise BudgetError(f"latency_ms must be a positive number of milliseconds, got {latency_ms!r}")
        p50 = self._p50_at_batch1()
        best = None
        for name in self._names:  # cheapest first, so the last one that fits is the largest
            if p50[name] <= latency_ms:
                best = name
        if best is not None:
            return best
        if fallback == "smallest":
            return self._names[0]
        fastest = min(p50, key=lambda n: p50[n])
        raise BudgetError(
            f"no variant meets latency_ms={latency_ms:g} on {self.latency_key}: the fastest ({fastest}) "
            f"has p50 {p50[fastest]:.4g} ms at batch 1; raise latency_ms or pass fallback='smallest'"
        )

    def _p50_at_batch1(self) -> dict[str, float]:
        def known() -> dict[str, float]:
            out = {}
            for name, info in self._infos.items():
                try:
                    out[name] = float(info.latency[self.latency_key]["batch"]["1"]["p50_ms"])
                except (KeyError, TypeError):
                    pass
            return out

        p50 = known()
        if len(p50) < len(self._names):
            with self._measure_lock:  # measure once even if many threads ask at the same time
                p50 = known()
                missing = [n for n in self._names if n not in p50]
                if missing:
                    self.measure_latency(batches=(1,), variants=missing)
                    p50 = known()
        return p50

    # -- latency -----------------------------------------------------------------------------------------
    def measure_latency(self, batches: Sequence[int] = (1,), *, repeats: int = 100, warmup: int = 10,
                        variants: Sequence[str] | None = None, example: np.ndarray | None = None,
                        save: bool = False) -> dict[str, dict[int, dict[str, float]]]:
        """Time each variant at each batch size and record p50/p95 for this backend/device.

        Args:
            batches: batch sizes to time.
            repeats: timed calls per (variant, batch); ``warmup`` untimed calls come first.
            variants: names to time (default all).
            example: one input sample (batch 1) to tile (``{name: array}`` for several inputs); needed when
                a non-batch dim is dynamic and the manifest records no example shape. Default: data of the
                manifest's example shape (:func:`slimkit.runtime.feeds.example_feed`).
            save: also write the results into the bundle's manifest (atomically).

        Returns:
            ``{variant: {batch: {"p50_ms", "p95_ms", "repeats"}}}``; also visible in ``engine.variants``.
        """
        if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
            raise ConfigError(f"repeats must be a positive int, got {repeats!r}")
        names = list(self._names if variants is None else variants)
        for n in names:
            if n not in self._entries:
                raise VariantError(f"no variant named {n!r}; this bundle has {self._names}")
        sample = example_feed(self.inputs, example)
        results: dict[str, dict[int, dict[str, float]]] = {}
        for n in names:
            fn, outs, key, _ = self._entries[n]
            results[n] = {}
            for b in batches:
                if isinstance(b, bool) or not isinstance(b, int) or b < 1:
                    raise ConfigError(f"batch sizes must be positive ints, got {b!r}")
                x = tile(sample, self.inputs, b)
                feed = x if len(self.inputs) > 1 else {key: x[self.input_spec.name]}
                for _ in range(warmup):
                    fn(outs, feed, None)
                times = np.empty(repeats)
                for i in range(repeats):
                    t0 = time.perf_counter()
                    fn(outs, feed, None)
                    times[i] = time.perf_counter() - t0
                p50, p95 = np.percentile(times * 1e3, [50, 95])
                results[n][b] = {"p50_ms": float(p50), "p95_ms": float(p95), "repeats": repeats}
        for n, per_batch in results.items():
            info = self._infos[n]
            latency = {k: dict(r) for k, r in info.latency.items()}
            rec = latency.setdefault(self.latency_key, {"batch": {}})
            rec["batch"] = {**rec.get("batch", {}), **{str(b): m for b, m in per_batch.items()}}
            if self.threads is not None:
                rec["threads"] = self.threads
            self._infos[n] = replace(info, latency=latency)
        self._cache.clear()  # latency choices may change
        self._by_budget.clear()
        if save:
            if self.bundle_dir is None:
                raise ConfigError("this engine was not loaded from a bundle directory; cannot save latency")
            update_latency(self.bundle_dir, self.latency_key, results, threads=self.threads)
        return results

    # -- inputs --------------------------------------------------------------------------------------------
    def _check_input(self, x: Any) -> None:
        check_array(self.input_spec, x)

    # -- introspection -------------------------------------------------------------------------------------
    @property
    def variants(self) -> list[VariantInfo]:
        """Every variant, cheapest first, with params, MACs, metrics, config and latency."""
        return [self._infos[n] for n in self._names]

    @property
    def names(self) -> list[str]:
        """The variants' names, cheapest first."""
        return list(self._names)

    def __repr__(self) -> str:
        return f"Engine({self.latency_key}, variants={self._names})"


def _entry(engine: Engine, backend: Backend, name: str) -> tuple:
    """``(fn, output_names, key, name)``: the engine calls ``fn(output_names, {key: x}, None)``."""
    call = getattr(backend, "feed_call", None)
    if call is not None and getattr(backend, "checks_inputs", False):
        return (*call, name)
    if len(engine.inputs) > 1:  # the feed was checked by the engine (check_feed)
        return (lambda _outputs, feed, _options: backend.run(feed)), None, "x", name

    def checked(_outputs: Any, feed: dict, _options: Any) -> list[np.ndarray]:
        engine._check_input(feed["x"])  # this backend does not validate inputs itself
        return backend.run(feed["x"])

    return checked, None, "x", name


def load(bundle_dir: str | os.PathLike, backend: str = "onnxruntime", threads: int | None = None,
         providers: Sequence[Any] | str | None = None, *, precision: str = "fp32",
         share_weights: bool | None = None, **options: Any) -> Engine:
    """Load a bundle: verify its manifest and files, and open one backend session per variant.

    Args:
        bundle_dir: a directory written by ``slimkit.export.bundle``.
        backend: ``"onnxruntime"`` (default), ``"torch"`` (``torch.export`` programs, CPU or CUDA) or
            ``"tensorrt"`` (engines built for this TensorRT and GPU).
        threads: intra-op threads per session (``None``: the backend's default).
        providers: ONNX Runtime execution providers (default ``["CPUExecutionProvider"]``).
        precision: ``"fp32"`` serves the variants; ``"int8"`` their INT8 twins (bundles made with
            ``quantize="int8"``). Budget selection picks among one precision only.
        share_weights: hold one copy of the weights in memory for every variant (a nested family, e.g.
            SortedNet widths, whose bundle stores its shared tensors once): onnxruntime sessions read
            views of one buffer, the torch backend views of one state dict. ``None`` (default) takes
            the faster mode of the backend: on onnxruntime a copy per variant (sharing costs 1.1x-1.5x
            latency there: the layers read their weights in pieces, not pre-packed), on torch one copy
            (views cost no measurable time). bench/shared_weights/RESULTS.md has both figures.
        options: further backend options, e.g. ``device="cuda", cuda_graphs=True`` for ``"torch"``.

    Raises:
        BundleError: bad manifest, tampered or missing file, a path escaping the bundle.
        ConfigError: unknown backend, unavailable provider, a precision the bundle lacks.
        MissingExtraError: the backend's library (torch, TensorRT) is not installed.

    Example:
        >>> eng = load("out/bundle", threads=1)  # doctest: +SKIP
        >>> eng.run(x, budget=0.5)
    """
    if share_weights is not None and not isinstance(share_weights, bool):
        raise ConfigError(f"share_weights must be True, False or None (the backend's default), got {share_weights!r}")
    manifest = read_manifest(bundle_dir).with_precision(precision)
    backends = open_backends(bundle_dir, manifest, backend, share_weights=share_weights, threads=threads,
                             providers=providers, **options)
    return Engine(manifest, backends, bundle_dir=bundle_dir, threads=threads)
