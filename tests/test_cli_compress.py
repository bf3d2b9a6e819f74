"""The shell path: ``slimkit compress`` -> ``slimkit export`` -> ``slimkit inspect`` -> the runtime, on a tiny
model trained here, plus the command's option parsing and its one-line errors."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from slimkit.export.cli import main
from slimkit.export.cli_compress import method_parser

MODELS = textwrap.dedent("""
    import torch
    from torch import nn

    from slimkit.compress import data


    def build(hidden=32):
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(13, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                             nn.Linear(hidden, 3))


    def loaders():
        splits = data.sklearn_dataset("wine", batch_size=32)
        return splits.train, splits.val


    NOT_CALLABLE = 3
""")


@pytest.fixture(scope="module")
def user_code(tmp_path_factory):
    """A user's ``models.py`` (factory + loaders) and the factory's model trained briefly, as a state dict."""
    from safetensors.torch import save_file

    from slimkit.compress import data, fit

    root = tmp_path_factory.mktemp("user")
    (root / "models.py").write_text(MODELS)
    namespace: dict = {}
    exec(compile(MODELS, "models.py", "exec"), namespace)
    model = namespace["build"]()
    splits = data.sklearn_dataset("wine", batch_size=32)
    fit(model, splits.train, epochs=15, lr=1e-2, progress=False)
    save_file(model.state_dict(), str(root / "trained.safetensors"))
    return root


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def _cli(*args: str) -> subprocess.CompletedProcess:
    code = ("import sys; from slimkit.export.cli import main; rc = main(sys.argv[1:]); "
            "print('TORCH_LOADED' if 'torch' in sys.modules else 'TORCH_FREE'); sys.exit(rc)")
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)


def test_compress_export_inspect_and_run_from_the_shell(user_code, tmp_path, capsys):
    from slimkit import runtime
    from slimkit.compress import Family, SortedNetConfig, data

    spec = f"{user_code / 'models.py'}:build"
    fam_dir, bundle = tmp_path / "fam", tmp_path / "bundle"
    rc = main(["compress", "sortednet", "--model", spec, "--model-weights", str(user_code / "trained.safetensors"),
               "--data", f"{user_code / 'models.py'}:loaders", "--out", str(fam_dir), "--widths", "0.5,1.0",
               "--epochs", "2", "--samples_per_step", "2", "--reorder", "false", "--quiet"])
    assert rc == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert f"slimkit export {fam_dir} --out BUNDLE --model {spec}" in out  # the next step, spelled out

    namespace: dict = {}
    exec(compile(MODELS, "models.py", "exec"), namespace)
    fam = Family.load(fam_dir, model=namespace["build"]())
    assert fam.names == ["w0.50", "w1.00"]
    recipe = SortedNetConfig.from_dict(fam.largest.config["recipe"])  # the options typed in the shell
    assert (recipe.widths, recipe.epochs, recipe.samples_per_step, recipe.reorder) == ((0.5, 1.0), 2, 2, False)
    assert fam.source["metrics"]["accuracy"] > 0.8  # the trained weights were loaded, not the factory's

    assert main(["export", str(fam_dir), "--out", str(bundle)]) == 2  # a user model: --model is needed
    assert "--model MODULE:FACTORY" in _one_line_error(capsys)
    assert not bundle.exists()
    assert main(["export", str(fam_dir), "--out", str(bundle), "--model", spec]) == 0

    r = _cli("inspect", str(bundle))
    assert r.returncode == 0, r.stderr
    assert "w0.50" in r.stdout and "w1.00" in r.stdout and "sha256 verified" in r.stdout
    assert r.stdout.strip().endswith("TORCH_FREE")

    engine = runtime.load(bundle)
    x, _ = next(iter(data.sklearn_dataset("wine", batch_size=32).val))
    for v in fam.variants:
        with torch.no_grad():
            want = v.model(x).numpy()
        np.testing.assert_allclose(engine.run(x.numpy(), variant=v.name), want, rtol=1e-4, atol=1e-5)
    assert engine.select(budget=0.5).name == "w0.50"


def test_zoo_model_with_built_in_data_exports_without_model(tmp_path, capsys):
    fam_dir, bundle = tmp_path / "fam", tmp_path / "bundle"
    rc = main(["compress", "boost", "--model", "zoo:mlp", "--model-kwargs", "in_features=13,num_classes=3,hidden=[16]",
               "--data", "sklearn:wine", "--out", str(fam_dir), "--stages", "2", "--units", "4", "--max-iter", "20",
               "--quiet"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "random weights" in captured.err and "--model-weights" in captured.err  # untrained: said once, plainly
    # a zoo model rebuilds itself: no --model, and the INT8 twins calibrate on the built-in data
    assert main(["export", str(fam_dir), "--out", str(bundle), "--quantize", "int8", "--data", "sklearn:wine"]) == 0
    from slimkit.runtime import read_manifest

    manifest = read_manifest(bundle)
    assert [t.name for t in manifest.twins] == [v.name + "-int8" for v in manifest.variants]
    assert len(manifest.variants) == 2  # stage counts 1 and 2


@pytest.mark.parametrize("argv, expected", [
    (["compress", "prune", "--model", "m:f", "--data", "mnist1d", "--out", "x"],
     ["unknown method 'prune'", "sortednet", "n2n", "snnk", "sparse_rnn", "boost"]),
    (["compress", "sortednet", "--model", "m:f", "--data", "mnist1d", "--out", "x", "--widthz", "0.5"],
     ["no option '--widthz'", "valid options:", "--widths", "--samples-per-step"]),
    (["compress", "sortednet", "--model", "m:f", "--data", "mnist1d", "--out", "x", "--widths", "half"],
     ["--widths", "'half'", "comma-separated list of numbers"]),
    (["compress", "sortednet", "--model", "m:f", "--data", "mnist1d", "--out", "x", "--widths", "0,2"],
     ["widths must be", "(0, 1]"]),
    (["compress", "n2n", "--model", "m:f", "--data", "mnist1d", "--out", "x", "--budget", "params"],
     ["--budget", "key=value"]),
    (["compress", "sortednet", "--data", "mnist1d", "--out", "x"], ["required", "--model"]),
    (["export", "no/such/dir", "--out", "b"], ["neither a saved family", "nor a bundle"]),
])
def test_bad_method_option_or_value_is_one_line_and_exit_2(argv, expected, capsys, tmp_path):
    assert main(argv) == 2
    err = _one_line_error(capsys)
    for text in expected:
        assert text in err, err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("model, expected", [
    ("no_such_pkg.models:build", ["cannot import no_such_pkg.models", "FILE.py:NAME"]),
    ("{dir}/models.py:missing", ["has no attribute 'missing'", "build", "loaders"]),
    ("{dir}/models.py:NOT_CALLABLE", ["is a int", "nn.Module or a function"]),
    ("{dir}/models.py:loaders", ["returned a tuple, not a torch.nn.Module"]),
    ("{dir}/nope.py:build", ["no file"]),
    ("build", ["expected MODULE:FACTORY"]),
    ("zoo:resnet50", ["unknown zoo model 'resnet50'", "rescnn"]),
])
def test_bad_factory_path_is_one_line_and_exit_2(model, expected, user_code, tmp_path, capsys):
    out = tmp_path / "fam"
    argv = ["compress", "sortednet", "--model", model.format(dir=user_code), "--data", "sklearn:wine",
            "--out", str(out), "--epochs", "0", "--quiet"]
    assert main(argv) == 2
    err = _one_line_error(capsys)
    for text in expected:
        assert text in err, err
    assert not out.exists()


def test_help_lists_every_option_of_every_method_with_default(capsys):
    from slimkit.compress import METHODS

    assert main(["compress", "--help"]) == 0
    listing = capsys.readouterr().out
    for name, (_, config_cls) in METHODS.items():
        assert name in listing
        assert main(["compress", name, "--help"]) == 0
        text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
        for option in config_cls.options():
            assert "--" + option.name.replace("_", "-") in text
        assert "--model SPEC" in text and "--out DIR" in text
    assert "(default: 0.25,0.5,0.75,1.0)" in " ".join(method_parser("sortednet").format_help().split())


def test_options_are_parsed_into_the_config_field_types():
    from slimkit.compress import N2NConfig, SNNKConfig, SortedNetConfig

    base = ["--model", "m:f", "--data", "mnist1d", "--out", "x"]
    args = vars(method_parser("n2n").parse_args(base + ["--budget", "params=0.2,macs=0.5", "--ratios", "0.5,1.0",
                                                        "--fill", "false", "--iterations", "3"]))
    cfg = N2NConfig.from_options(**{k: v for k, v in args.items() if k in N2NConfig.field_names()})
    assert cfg.budget == {"params": 0.2, "macs": 0.5} and cfg.ratios == (0.5, 1.0)
    assert cfg.fill is False and cfg.iterations == 3

    args = vars(method_parser("snnk").parse_args(base + ["--epochs", "none", "--ridge", "auto", "--features", "8,16",
                                                         "--targets", "mlp.0,mlp.2"]))
    assert (args["epochs"], args["ridge"], args["features"], args["targets"]) == (None, "auto", (8, 16),
                                                                                 ("mlp.0", "mlp.2"))
    assert method_parser("snnk").parse_args(base + ["--ridge", "0.1"]).ridge == 0.1

    args = vars(method_parser("sortednet").parse_args(base + ["--distill", "--depths", "none", "--strategy", "all"]))
    assert args["distill"] is True and args["depths"] is None
    assert "widths" not in args  # options not given keep the config's defaults
    assert SortedNetConfig.from_options(distill=True, depths=None, strategy="all").widths == (0.25, 0.5, 0.75, 1.0)
    assert SNNKConfig.from_options(epochs=None, ridge="auto").ridge == "auto"


def test_readme_shell_lines_parse():
    """Every ``slimkit ...`` line of the README's shell block names real verbs, options and values."""
    import re
    import shlex
    from pathlib import Path

    from slimkit.export.cli import build_parser

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = re.search(r"```sh\n(.*?)```", readme, re.S).group(1)
    lines = [shlex.split(line, comments=True) for line in block.splitlines() if line.startswith("slimkit ")]
    assert {argv[1] for argv in lines} >= {"compress", "export", "inspect", "serve"}
    for argv in lines:
        if argv[1] == "compress":
            method_parser(argv[2]).parse_args(argv[3:])
        else:
            build_parser().parse_args(argv[1:])
