"""``slimkit compress METHOD``: a trained model and its data in, a saved :class:`~slimkit.compress.Family` out.

    slimkit compress sortednet --model mypkg.models:build --data mypkg.data:loaders --out fam/ \\
        --widths 0.25,0.5,1.0 --epochs 5
    slimkit compress n2n --model zoo:rescnn --model-weights rescnn.safetensors --data mnist1d --out fam/ \\
        --budget params=0.2
    slimkit compress sortednet --help          every option of the method, from its config

The options after ``--out`` are the method's config fields (:meth:`MethodConfig.options`), spelled with
dashes. Each value is parsed into the field's type: numbers, ``true``/``false`` (a bare ``--distill``
is true), ``none`` where the field may be None, comma-separated tuples (``0.25,0.5,1.0``), and mappings
as ``key=value,...`` (``params=0.2``) or JSON. The method's config then validates them as its Python
API does, so the shell refuses exactly what the API refuses, with the same message.
"""

from __future__ import annotations

import argparse
import inspect
import re
import shlex
from pathlib import Path
from typing import Any

from slimkit.runtime.errors import ConfigError

from .cli_specs import DATA_FORMS, MODEL_FORMS, load_data, load_model, parse_mapping, parse_scalar

__all__ = ["compress_command", "method_parser", "OneLineParser"]

# the entry functions' arguments the command fills itself (not method options)
_FILLED = {"model", "teacher", "train", "val", "example_input", "progress", "config", "options"}


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line that says where to look, with exit code 2."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)  # --wid is not --widths: no silent guessing
        super().__init__(*args, **kwargs)
        self.flags: list[str] = []  # the options a user may pass, for "valid options: ..." messages

    def add_flag(self, group: Any, flag: str, **kwargs: Any) -> None:
        """``group.add_argument(flag, ...)``, remembering ``flag`` for error messages."""
        group.add_argument(flag, **kwargs)
        self.flags.append(flag)

    def error(self, message: str) -> Any:
        """Print ``message`` on one line with where to look, and exit with status 2 (argparse's hook)."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _plain(text: str) -> str:
    """Docstring markup as plain terminal text: ``x`` -> x, :func:`~a.b` -> b."""
    text = re.sub(r":\w+:`~?([\w.]+)`", lambda m: m.group(1).rsplit(".", 1)[-1], text)
    return text.replace("``", "")


def _converter(type_str: str, name: str):
    """The function turning a command-line string into a value of the field type ``type_str``."""
    parts = [p.strip() for p in type_str.split("|")]
    nullable = "None" in parts
    core = [p for p in parts if p != "None"]

    def one(kind: str, text: str) -> Any:
        if kind == "bool":
            low = text.lower()
            if low in ("true", "yes", "1", "on"):
                return True
            if low in ("false", "no", "0", "off"):
                return False
            raise ValueError("")
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
        if kind == "str":
            return text
        m = re.fullmatch(r"tuple\[(\w+), \.\.\.\]", kind)
        if m:
            value = parse_scalar(text)
            items = value if isinstance(value, list) else [t for t in text.split(",") if t.strip()]
            return tuple(one(m.group(1), str(v).strip()) for v in items)
        if kind.startswith("dict["):
            return parse_mapping(text, what=f"--{name.replace('_', '-')}")
        return parse_scalar(text)

    def convert(text: str) -> Any:
        if nullable and text.lower() in ("none", "null"):
            return None
        errors = []
        for kind in core:  # e.g. "float | str": the first type that parses wins
            try:
                return one(kind, text)
            except (ValueError, ConfigError) as e:
                errors += [str(e)] if str(e) else []
        hint = " or ".join(_describe(k) for k in core) + (" or none" if nullable else "")
        raise argparse.ArgumentTypeError(f"{text!r} is not {hint}" + (f" ({errors[-1]})" if errors else ""))

    return convert


def _describe(kind: str) -> str:
    """A field type in words, for error messages."""
    m = re.fullmatch(r"tuple\[(\w+), \.\.\.\]", kind)
    if m:
        return {"float": "a comma-separated list of numbers (e.g. 0.25,0.5,1.0)",
                "int": "a comma-separated list of ints (e.g. 16,64)"}.get(m.group(1), "a comma-separated list")
    if kind.startswith("dict["):
        return "a mapping key=value,... (e.g. params=0.2)"
    return {"int": "an int", "float": "a number", "bool": "true or false", "str": "text"}.get(kind, kind)


def _metavar(type_str: str) -> str:
    core = type_str.replace(" | None", "").strip()
    if core.startswith("tuple["):
        return "A,B,..."
    if core.startswith("dict["):
        return "KEY=VALUE,..."
    return {"int": "N", "float": "X", "bool": "true|false", "str": "TEXT"}.get(core, "VALUE")


def _show(default: Any) -> str:
    """A default as the command line would spell it."""
    if isinstance(default, tuple):
        return ",".join(str(v) for v in default) or "empty"
    if isinstance(default, dict):
        return ",".join(f"{k}={v}" for k, v in default.items()) or "none"
    if isinstance(default, bool):
        return str(default).lower()
    return "none" if default is None or default == "" else str(default)


def _summary(fn: Any) -> str:
    """The first paragraph of ``fn``'s docstring, on one line, as plain text."""
    first = (fn.__doc__ or "").strip().split("\n\n")[0]
    return _plain(" ".join(line.strip() for line in first.splitlines()))


def _entry_extras(fn: Any, config_cls: Any) -> list[tuple[str, str, str]]:
    """Keyword arguments of an entry function that are neither config fields nor filled by the command
    (N2N's ``checkpoint``, ``policies``): ``(name, metavar, help from the function's Args: section)``."""
    from slimkit.compress.config import docstring_fields

    fields = set(config_cls.field_names())
    helps = docstring_fields(fn.__doc__ or "", "Args")
    return [(name, "PATH" if "PathLike" in str(p.annotation) else "VALUE", helps.get(name, ""))
            for name, p in inspect.signature(fn).parameters.items() if name not in fields | _FILLED]


def method_parser(method: str) -> OneLineParser:
    """The argument parser of ``slimkit compress METHOD``, with one option per config field."""
    from slimkit.compress import METHODS

    fn, config_cls = METHODS[method]
    p = OneLineParser(prog=f"slimkit compress {method}", description=_summary(fn),
                      epilog=f"Python API: slimkit.compress.{method}(model, train=, val=, ...) with "
                             f"{config_cls.__name__}; every option maps to a field of it.")
    io = p.add_argument_group("model, data and output")
    p.add_flag(io, "--model", required=True, metavar="SPEC",
                    help=f"the trained model: {MODEL_FORMS} (a zoo model is untrained unless --model-weights)")
    p.add_flag(io, "--data", required=True, metavar="SPEC",
                    help=f"train and val loaders: {DATA_FORMS}")
    p.add_flag(io, "--out", required=True, metavar="DIR", help="new directory for the family (Family.save)")
    p.add_flag(io, "--model-weights", metavar="FILE",
               help="a state dict (.safetensors or .pt) to load into the model, e.g. trained weights of a zoo model")
    p.add_flag(io, "--model-kwargs", metavar="KEY=VALUE,...", default="",
                    help="keyword arguments of the factory or zoo model, e.g. in_features=13,num_classes=3")
    p.add_flag(io, "--quiet", action="store_true", help="no progress bars")
    opts = p.add_argument_group(f"{method} options ({config_cls.__name__})")
    for o in config_cls.options():
        kind = o.type.replace(" | None", "")
        help_text = f"{_plain(o.help).rstrip('.')} (default: {_show(o.default)})".replace("%", "%%")
        flag = "--" + o.name.replace("_", "-")
        if kind == "bool":  # a bare --distill means true
            p.add_flag(opts, flag, dest=o.name, nargs="?", const=True, type=_converter(o.type, o.name),
                              metavar="true|false", default=argparse.SUPPRESS, help=help_text)
        else:
            p.add_flag(opts, flag, dest=o.name, type=_converter(o.type, o.name), metavar=_metavar(o.type),
                              default=argparse.SUPPRESS, help=help_text)
    for name, metavar, help_text in _entry_extras(fn, config_cls):
        p.add_flag(opts, "--" + name.replace("_", "-"), dest=name, metavar=metavar, default=argparse.SUPPRESS,
                          help=_plain(help_text).replace("%", "%%"))
    return p


def _methods_help() -> str:
    from slimkit.compress import METHODS

    rows = [f"  {name:<12}{_summary(fn)}" for name, (fn, _) in METHODS.items()]
    return ("usage: slimkit compress METHOD --model SPEC --data SPEC --out DIR [--option VALUE ...]\n\n"
            "Compress a trained model into a family of variants and save it (then: slimkit export DIR --out "
            "BUNDLE).\n\nmethods:\n" + "\n".join(rows) +
            "\n\nslimkit compress METHOD --help lists that method's options.\n")


def _normalise(argv: list[str]) -> list[str]:
    """``--samples_per_step`` -> ``--samples-per-step``: Python names work too."""
    out = []
    for a in argv:
        if a.startswith("--"):
            name, eq, value = a.partition("=")
            a = name.replace("_", "-") + eq + value
        out.append(a)
    return out


def compress_command(argv: list[str]) -> int:
    """``slimkit compress METHOD ...``: parse, compress, save the family; 2 on a user error."""
    from slimkit.compress import METHODS

    if not argv or argv[0] in ("-h", "--help"):
        print(_methods_help(), end="")
        return 0 if argv else 2
    method = argv[0].replace("-", "_")
    if method not in METHODS:
        raise ConfigError(f"unknown method {argv[0]!r}; choose one of {', '.join(METHODS)} "
                          "(slimkit compress --help describes them)")
    parser = method_parser(method)
    args, unknown = parser.parse_known_args(_normalise(argv[1:]))
    if unknown:
        valid = parser.flags
        bad = [u for u in unknown if u.startswith("-")] or unknown
        raise ConfigError(f"{method} has no option {bad[0]!r}; valid options: {', '.join(valid)} "
                          f"(slimkit compress {method} --help)")
    return _compress(method, args)


def _compress(method: str, args: argparse.Namespace) -> int:
    from slimkit.compress import METHODS

    fn, config_cls = METHODS[method]
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"--out {out} exists and is not an empty directory; choose a new one")
    fields = set(config_cls.field_names())
    given = {k: v for k, v in vars(args).items() if k in fields}
    extras = {k: v for k, v in vars(args).items() if k in {e[0] for e in _entry_extras(fn, config_cls)}}
    cfg = config_cls.from_options(**given)  # bad values refused before any data is made or model built
    data = load_data(args.data)
    if data.task == "regression" and "task" in fields and "task" not in given:
        cfg = config_cls.from_options(**given, task="regression")  # the data says so; --task would too
    model = load_model(args.model, kwargs=parse_mapping(args.model_kwargs, what="--model-kwargs"),
                       weights=args.model_weights)
    fam = fn(model, train=data.train, val=data.val, example_input=data.example_input, progress=not args.quiet,
             config=cfg, **extras)
    fam.save(out)
    print(fam.summary())
    changed = {k: getattr(cfg, k) for k in given}
    print(f"\n{len(fam)} {method} variants saved to {out}" + (f" (options {changed})" if changed else ""))
    model_args = "" if fam.base else f" --model {shlex.quote(args.model)}" + (
        f" --model-kwargs {shlex.quote(args.model_kwargs)}" if args.model_kwargs else "")
    print(f"next: slimkit export {out} --out BUNDLE{model_args}")
    return 0
