"""The ``slimkit`` command. Each verb imports what it needs when it runs, so ``slimkit inspect`` and
``slimkit bench`` never load torch.

    slimkit demo [--out DIR]              the main job on MNIST-1D, end to end
    slimkit inspect BUNDLE                what a bundle holds, files verified
    slimkit bench BUNDLE [--batches 1 64] latency per variant, written back into the manifest
    slimkit serve BUNDLE [--port 8000]    KServe v2 / Triton HTTP server with budgets and SLO control
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    import torch

    from .demo import format_table, run_demo

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    result = run_demo(args.out, samples=args.samples, teacher_epochs=args.teacher_epochs,
                      epochs=args.epochs, threads=args.threads, progress=not args.quiet, seed=args.seed)
    print()
    print(format_table(result["rows"]))
    t = result["timings_s"]
    print(f"\nteacher test accuracy {result['teacher']['test']['accuracy']:.4f}; total {t['total']:.0f} s "
          f"(data {t['data']:.0f}, teacher {t['teacher']:.0f}, sortednet {t['sortednet']:.0f}, "
          f"export {t['export']:.0f}, runtime {t['runtime']:.0f})")
    paths = result["paths"]
    print(f"bundle:  {paths['bundle']}   (serve it: runtime.load(...).run(x, budget=0.5))")
    print(f"family:  {paths['family']}   (PyTorch modules: compress.Family.load(...))")
    print(f"results: {paths['results']}")
    print(f"plot:    {paths['plot']}" if "plot" in paths
          else 'plot:    skipped, matplotlib is missing: pip install "slimkit[plot]"')
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from slimkit.runtime import read_manifest

    m = read_manifest(args.bundle)  # verifies every file's sha256
    print(f"bundle {args.bundle}: method {m.method or '?'}, task {m.task}, format {m.format} v{m.version}")
    for s in m.inputs:
        print(f"  input  {s.describe()}")
    for s in m.outputs:
        print(f"  output {s.describe()}")
    src = m.source or {}
    if src:
        print(f"  source: {src.get('params', 0):,} params, {src.get('macs', 0):,} MACs, metrics {src.get('metrics')}")
    head = f"  {'variant':<14}{'params':>10}{'MACs':>13}{'metrics':>24}  latency p50 (ms) by backend/device, batch"
    print(head)
    for v in m.variants:
        metric = ", ".join(f"{k}={val:.4f}" for k, val in v.metrics.items() if k != "loss")
        lat = "; ".join(f"{key}: " + " ".join(f"b{b}={r['p50_ms']:.3f}" for b, r in rec.get("batch", {}).items())
                        for key, rec in v.latency.items()) or "not measured (slimkit bench)"
        print(f"  {v.name:<14}{v.params:>10,}{v.macs:>13,}{metric:>24}  {lat}")
    if m.weights is not None:
        readers = [v.name for v in m.variants + m.twins if "weights" in v.files]
        print(f"  shared weights: {m.weights.path}, {m.weights.bytes:,} bytes, {len(m.weights.tensors)} tensors, "
              f"read by {', '.join(readers)} (one copy in memory: runtime.load(..., share_weights=True))")
    print("  all files present, inside the bundle, sha256 verified")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from slimkit import runtime

    engine = runtime.load(args.bundle, threads=args.threads)
    results = engine.measure_latency(batches=tuple(args.batches), repeats=args.repeats, save=not args.no_save)
    print(f"{engine.latency_key}, threads={args.threads or 'default'}, {args.repeats} timed calls each")
    print(f"{'variant':<14}{'batch':>6}{'p50 ms':>10}{'p95 ms':>10}{'vs largest':>12}")
    largest = engine.names[-1]
    for name, per_batch in results.items():
        for b, r in per_batch.items():
            ratio = results[largest][b]["p50_ms"] / r["p50_ms"]
            print(f"{name:<14}{b:>6}{r['p50_ms']:>10.3f}{r['p95_ms']:>10.3f}{ratio:>11.2f}x")
    if not args.no_save:
        print(f"written into {Path(args.bundle) / 'manifest.json'}: runtime.load(...).run(x, latency_ms=...) uses it")
    return 0


def _serve(args: argparse.Namespace) -> int:
    import os

    from slimkit.runtime.server import serve

    token = args.token
    if token is None and args.token_env:
        token = os.environ.get(args.token_env) or None
        if token is None:
            print(f"slimkit serve: error: --token-env {args.token_env}: that variable is empty or unset",
                  file=sys.stderr)
            return 2
    serve(args.bundle, host=args.host, port=args.port, name=args.name, workers=args.workers,
          threads=args.threads, slo_ms=args.slo_ms, token=token, max_body_bytes=args.max_body_mb << 20,
          inline_us=args.inline_us, log_level=args.log_level, slo_min_gain=args.slo_min_gain,
          share_weights=args.share_weights)
    return 0


def _export(args: argparse.Namespace) -> int:
    from .tensorrt import export_tensorrt_command

    return export_tensorrt_command(args)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="slimkit", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="MNIST-1D -> teacher -> SortedNet -> ONNX bundle -> runtime, with a table")
    d.add_argument("--out", default="slimkit-demo", help="output directory (default ./slimkit-demo)")
    d.add_argument("--samples", type=int, default=10_000, help="MNIST-1D samples generated")
    d.add_argument("--teacher-epochs", type=int, default=8)
    d.add_argument("--epochs", type=int, default=6, help="SortedNet training epochs")
    d.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads")
    d.add_argument("--torch-threads", type=int, default=1,
                   help="PyTorch threads for training (default 1: these models are small, and on a busy "
                        "2-core machine two threads stalled training 30x; 0 keeps PyTorch's choice)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--quiet", action="store_true", help="no progress bars")
    d.set_defaults(fn=_demo)

    i = sub.add_parser("inspect", help="show a bundle's variants, costs, metrics and measured latency")
    i.add_argument("bundle")
    i.set_defaults(fn=_inspect)

    b = sub.add_parser("bench", help="time every variant of a bundle and store p50/p95 in its manifest")
    b.add_argument("bundle")
    b.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    b.add_argument("--repeats", type=int, default=200)
    b.add_argument("--threads", type=int, default=None)
    b.add_argument("--no-save", action="store_true", help="print only; leave the manifest untouched")
    b.set_defaults(fn=_bench)

    s = sub.add_parser("serve", help="serve a bundle over HTTP (KServe v2 / Triton protocol, budgets, SLO mode)",
                       description="Serve BUNDLE over the KServe v2 / Triton HTTP protocol. Requests may pass "
                                   "parameters budget, variant or latency_ms; the response names the variant.")
    s.add_argument("bundle")
    s.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0 for the network, with --token)")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--name", default=None, help="model name in URLs (default: the bundle directory's name)")
    s.add_argument("--workers", type=int, default=1, help="server processes sharing the port")
    s.add_argument("--threads", type=int, default=None, help="inference threads per process (default: CPUs)")
    s.add_argument("--slo-ms", type=float, default=None,
                   help="SLO mode: serve the largest variant that keeps p95 server latency under this")
    s.add_argument("--slo-min-gain", type=float, default=0.005,
                   help="SLO mode: a costlier variant must be this much more accurate (fraction) to be served "
                        "(default 0.005)")
    s.add_argument("--token", default=None, help="require 'Authorization: Bearer TOKEN' (except health)")
    s.add_argument("--token-env", default=None, metavar="VAR",
                   help="read the token from this environment variable (keeps it out of the process list)")
    s.add_argument("--max-body-mb", type=int, default=16, help="larger request bodies get 413 (default 16)")
    s.add_argument("--inline-us", type=float, default=100.0,
                   help="a request alone in the server and predicted to compute under this many microseconds "
                        "skips the thread pool (default 100; 0: always the pool)")
    s.add_argument("--share-weights", action=argparse.BooleanOptionalAction, default=None,
                   help="one copy of the weights in memory for every variant of a nested family (less memory, "
                        "some latency on onnxruntime; default: the backend's faster mode; docs/bundle-and-runtime.md)")
    s.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    s.set_defaults(fn=_serve)

    e = sub.add_parser("export", help="add TensorRT engines (for this GPU and TensorRT version) to a bundle")
    e.add_argument("bundle")
    e.add_argument("--tensorrt", action="store_true", required=True, help="build TensorRT engines")
    e.add_argument("--fp16", action="store_true", help="allow FP16 kernels (TensorRT 11: casts the ONNX first)")
    e.add_argument("--int8", action="store_true", help="engines for the INT8 twins; needs --calibration")
    e.add_argument("--sparse", action="store_true", help="allow 2:4 structured-sparse kernels (Ampere and later)")
    e.add_argument("--min-batch", type=int, default=1)
    e.add_argument("--opt-batch", type=int, default=None, help="batch the kernels are tuned for (default: max)")
    e.add_argument("--max-batch", type=int, default=64)
    e.add_argument("--workspace", type=int, default=1 << 30, help="builder workspace in bytes (default 1 GiB)")
    e.add_argument("--calibration", default=None, help=".npy of input samples (N, ...) for --int8")
    e.set_defaults(fn=_export)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``slimkit`` console script."""
    from slimkit.runtime.errors import SlimkitError

    args = _parser().parse_args(argv)
    try:
        return args.fn(args)
    except SlimkitError as e:  # our errors already say what to do: no traceback
        print(f"slimkit {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
