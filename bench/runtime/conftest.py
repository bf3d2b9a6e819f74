"""Session fixtures of the latency suites: one SortedNet family of the zoo ResCNN, one bundle, engines.

Latency does not depend on what the weights learned, so the family is built with ``epochs=0``
(SortedNet still reorders channels, slices every width and recalibrates BatchNorm). Everything is
built once per session in a temp dir; the benchmarks time only steady-state calls.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench.common import WIDTHS


@pytest.fixture(scope="session")
def bench_family():
    """A SortedNet family of ``zoo.build("rescnn", channels=(32, 64), depths=(2, 2))``, cheapest first."""
    import torch

    from slimkit import compress

    # one torch thread: on a shared 2-core box two threads oversubscribe and stall (see README)
    torch.set_num_threads(1)
    splits = compress.data.mnist1d(num_samples=1000, layout="channels", seed=0)
    torch.manual_seed(0)
    model = compress.zoo.build("rescnn", channels=(32, 64), depths=(2, 2))
    return compress.sortednet(model, train=splits.train, widths=WIDTHS, epochs=0,
                              example_input=splits.example_input, progress=False, seed=0)


@pytest.fixture(scope="session")
def bench_bundle(tmp_path_factory, bench_family):
    """The family exported as a bundle (one ONNX file per width)."""
    from slimkit import export

    path = tmp_path_factory.mktemp("bench") / "bundle"
    export.bundle(bench_family, bench_family.example_input, path, overwrite=True)
    return path


@pytest.fixture(scope="session")
def engines(bench_bundle):
    """``{threads: Engine}`` for intra-op threads 1 and ONNX Runtime's default (None)."""
    from slimkit import runtime

    return {t: runtime.load(bench_bundle, threads=t) for t in (1, None)}


@pytest.fixture(scope="session")
def inputs(bench_family):
    """``{batch: float32 array}`` for batch 1 and 64, fixed random data."""
    rng = np.random.default_rng(0)
    shape = tuple(bench_family.example_input.shape[1:])
    return {b: rng.standard_normal((b, *shape)).astype(np.float32) for b in (1, 64)}
