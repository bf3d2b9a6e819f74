"""The ``slimkit`` command. Each verb imports what it needs when it runs, so ``slimkit inspect``,
``slimkit bench`` and ``slimkit serve`` never load torch.

    slimkit demo [--out DIR]                          the main job on MNIST-1D, end to end
    slimkit compress METHOD --model SPEC --data SPEC --out FAMILY [--option VALUE ...]
                                                      a trained model -> a saved family of variants
    slimkit export FAMILY --out BUNDLE [--quantize int8] [--torch-export]
                                                      a saved family -> an ONNX bundle
    slimkit export BUNDLE --tensorrt [--fp16]         add TensorRT engines to a bundle
    slimkit inspect BUNDLE                            what a bundle holds, files verified
    slimkit bench BUNDLE [--batches 1 64]             latency per variant, written back into the manifest
    slimkit serve BUNDLE [--port 8000]                KServe v2 / Triton HTTP server with budgets and SLO control

User errors (a bad path, option or model) print one line saying what to do and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

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
    for s in m.inputs:  # every input by name: a request sends each (input_ids, attention_mask, ...)
        print(f"  input  {s.name}: {s.describe()}")
    for s in m.outputs:
        print(f"  output {s.name}: {s.describe()}")
    src = m.source or {}
    if src:
        print(f"  source: {src.get('params', 0):,} params, {src.get('macs', 0):,} MACs, metrics {src.get('metrics')}")
    head = (f"  {'variant':<14}{'params':>10}{'MACs':>13}{'ONNX KiB':>10}{'metrics':>24}  "
            "latency p50 (ms) by backend/device, batch")
    print(head)
    for v in m.variants + m.twins:  # twins: INT8 copies (export --quantize int8), runtime.load(precision="int8")
        metric = ", ".join(f"{k}={val:.4f}" for k, val in v.metrics.items() if k != "loss" and not k.endswith("_bytes"))
        size = f"{v.metrics['onnx_bytes'] / 1024:.1f}" if "onnx_bytes" in v.metrics else "-"
        lat = "; ".join(f"{key}: " + " ".join(f"b{b}={r['p50_ms']:.3f}" for b, r in rec.get("batch", {}).items())
                        for key, rec in v.latency.items()) or "not measured (slimkit bench)"
        print(f"  {v.name:<14}{v.params:>10,}{v.macs:>13,}{size:>10}{metric:>24}  {lat}")
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
    from slimkit.runtime.errors import ConfigError

    path = Path(args.path)
    is_family, is_bundle = (path / "family.json").is_file(), (path / "manifest.json").is_file()
    family_flags = [f for f, on in (("--out", args.out), ("--quantize", args.quantize), ("--data", args.data),
                                    ("--torch-export", args.torch_export), ("--model", args.model)) if on]
    if is_bundle:
        if family_flags:
            raise ConfigError(f"{path} is a bundle already; {family_flags[0]} applies to a family directory "
                              "(made by slimkit compress). On a bundle, slimkit export adds --tensorrt engines")
        if not args.tensorrt:
            raise ConfigError(f"{path} is a bundle: pass --tensorrt to add TensorRT engines to it")
        from .tensorrt import export_tensorrt_command

        args.bundle = str(path)
        return export_tensorrt_command(args)
    if not is_family:
        raise ConfigError(f"{path} is neither a saved family (family.json, from slimkit compress or Family.save) "
                          "nor a bundle (manifest.json)")
    if args.tensorrt or args.fp16 or args.int8 or args.sparse or args.calibration:
        raise ConfigError(f"--tensorrt adds engines to a bundle: run slimkit export {path} --out BUNDLE first, "
                          "then slimkit export BUNDLE --tensorrt")
    if args.data and not args.quantize:
        raise ConfigError("--data calibrates and scores INT8 twins: use it with --quantize int8, or leave it out")
    if not args.out:
        raise ConfigError(f"pass --out BUNDLE: the new directory to write {path}'s bundle into")
    return _export_family(args, path)


def _export_family(args: argparse.Namespace, path: Path) -> int:
    import json

    from slimkit.compress import Family
    from slimkit.runtime.errors import ConfigError

    from .bundler import bundle
    from .cli_specs import load_data, load_model, parse_mapping

    base = json.loads((path / "family.json").read_text()).get("base")
    model = None
    if args.model:
        model = load_model(args.model, kwargs=parse_mapping(args.model_kwargs, what="--model-kwargs"))
    elif not base:
        raise ConfigError(f"{path} was compressed from your own model: pass --model MODULE:FACTORY (the one "
                          "given to slimkit compress) so its variants can be rebuilt")
    fam = Family.load(path, model=model)
    data = load_data(args.data) if args.data else None
    out = bundle(fam, fam.example_input, args.out, overwrite=args.overwrite, quantize=args.quantize,
                 calibration=data.val if data and args.quantize else None,
                 eval_data=data.val if data and args.quantize else None, torch_export=args.torch_export)
    print(f"{len(fam)} variants of {path} ({fam.method}) exported to {out}: {', '.join(fam.names)}"
          + (" (+ INT8 twins)" if args.quantize else ""))
    print(f"next: slimkit inspect {out}  |  slimkit serve {out}  |  runtime.load({str(out)!r}).run(x, budget=0.5)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``slimkit`` argument parser (``compress`` has its own per method: :func:`.cli_compress.method_parser`)."""
    from .cli_compress import OneLineParser

    p = OneLineParser(prog="slimkit", description=(__doc__ or "").replace("``", ""),
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

    sub.add_parser("compress", add_help=False,
                   help="compress a trained model into a saved family (slimkit compress --help)")

    e = sub.add_parser("export", help="a saved family -> an ONNX bundle; or add TensorRT engines to a bundle",
                       description="slimkit export FAMILY --out BUNDLE writes a bundle (ONNX per variant + manifest) "
                                   "from a family saved by slimkit compress; slimkit export BUNDLE --tensorrt adds "
                                   "TensorRT engines to a bundle. The path says which: family.json or manifest.json.")
    e.add_argument("path", metavar="FAMILY_OR_BUNDLE")
    g = e.add_argument_group("family -> bundle")
    g.add_argument("--out", default=None, metavar="BUNDLE", help="the new bundle directory")
    g.add_argument("--model", default=None, metavar="SPEC",
                   help="the model the family was compressed from (MODULE:FACTORY or FILE.py:FACTORY); "
                        "not needed for zoo models")
    g.add_argument("--model-kwargs", default="", metavar="KEY=VALUE,...", help="keyword arguments of that factory")
    g.add_argument("--quantize", choices=["int8"], default=None, help="add an INT8 twin of every variant")
    g.add_argument("--data", default=None, metavar="SPEC",
                   help="with --quantize: loaders whose val split calibrates and scores the twins "
                        "(mnist1d[:LAYOUT], sklearn:NAME, MODULE:LOADERS); without it, dynamic INT8")
    g.add_argument("--torch-export", action="store_true",
                   help="also save each variant as a torch.export program (runtime.load(dir, backend='torch'))")
    g.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    t = e.add_argument_group("bundle -> TensorRT engines")
    t.add_argument("--tensorrt", action="store_true", help="build TensorRT engines into the bundle")
    t.add_argument("--fp16", action="store_true", help="allow FP16 kernels (TensorRT 11: casts the ONNX first)")
    t.add_argument("--int8", action="store_true", help="engines for the INT8 twins; needs --calibration")
    t.add_argument("--sparse", action="store_true", help="allow 2:4 structured-sparse kernels (Ampere and later)")
    t.add_argument("--min-batch", type=int, default=1)
    t.add_argument("--opt-batch", type=int, default=None, help="batch the kernels are tuned for (default: max)")
    t.add_argument("--max-batch", type=int, default=64)
    t.add_argument("--workspace", type=int, default=1 << 30, help="builder workspace in bytes (default 1 GiB)")
    t.add_argument("--calibration", default=None, help=".npy of input samples (N, ...) for --int8")
    e.set_defaults(fn=_export)
    return p


def _show_warning(message: Any, category: Any, filename: str, lineno: int, file: Any = None,
                  line: Any = None) -> None:
    print(f"slimkit: warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``slimkit`` console script; returns the exit status (2: a user error)."""
    from slimkit.runtime.errors import SlimkitError

    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv else None
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning  # one line each, not a source excerpt
        try:
            if command == "compress":
                from .cli_compress import compress_command

                if len(argv) > 1 and not argv[1].startswith("-"):
                    command = f"compress {argv[1]}"
                return compress_command(argv[1:])
            args = build_parser().parse_args(argv)
            command = args.command
            return args.fn(args)
        except SystemExit as e:  # argparse: --help (0) or a usage error (2), already printed
            return e.code if isinstance(e.code, int) else 0 if e.code is None else 2
        except SlimkitError as e:  # our errors already say what to do: no traceback
            print(f"slimkit {command}: error: {e}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"slimkit {command}: interrupted", file=sys.stderr)
            return 130


if __name__ == "__main__":
    sys.exit(main())
