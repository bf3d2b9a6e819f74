"""The installed package: one `slimkit.*` namespace, no generic top-level names, a console script."""

from __future__ import annotations

import shutil
import subprocess
import sys


def _python(code: str, tmp_path) -> subprocess.CompletedProcess:
    # run from an unrelated directory so the repository root is not on sys.path
    return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)


def test_folders_import_as_slimkit_subpackages_only(tmp_path):
    r = _python("import slimkit.compress, slimkit.export, slimkit.runtime, slimkit.policies; print('ok')", tmp_path)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr
    for name in ("compress", "export", "runtime", "policies"):
        r = _python(f"import {name}", tmp_path)
        assert r.returncode != 0 and "No module named" in r.stderr, f"`import {name}` must not work"


def test_public_contract_names_exist(tmp_path):
    code = ("from slimkit import compress, export, runtime\n"
            "for n in ['sortednet', 'n2n', 'snnk', 'boost', 'sparse_rnn', 'Family', 'Variant', 'SortedNet']: getattr(compress, n)\n"
            "for n in ['to_onnx', 'bundle']: getattr(export, n)\n"
            "for n in ['load', 'Engine', 'SlimkitError', 'BudgetError', 'BundleError']: getattr(runtime, n)\n"
            "print('ok')")
    r = _python(code, tmp_path)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr


def test_console_script_is_installed(tmp_path):
    exe = shutil.which("slimkit") or str(__import__("pathlib").Path(sys.executable).with_name("slimkit"))
    r = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 0
    for verb in ("demo", "inspect", "bench"):
        assert verb in r.stdout


def test_the_built_wheel_ships_every_subpackage(tmp_path):
    """setup.py finds the packages: every folder with an __init__.py below the four code folders ships."""
    import zipfile
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(root / name, src / name)
    folders = ("compress", "export", "policies", "runtime")
    for folder in folders:
        shutil.copytree(root / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__"))
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(src),
                        "-w", str(tmp_path / "dist")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("slimkit-*.whl")
    shipped = {n.rsplit("/", 1)[0] for n in zipfile.ZipFile(wheel).namelist() if n.endswith("/__init__.py")}
    on_disk = {"slimkit/" + str(p.parent.relative_to(root)) for f in folders for p in (root / f).rglob("__init__.py")}
    assert on_disk <= shipped and "slimkit/compress/sortednet" in shipped, sorted(on_disk - shipped)
