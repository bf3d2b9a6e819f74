"""Package discovery for this repository's layout; the metadata lives in pyproject.toml.

Each top-level code folder is the ``slimkit.<folder>`` package (shared/DESIGN.md), and every package found
below it ships as ``slimkit.<folder>.<sub>``, so a new method package needs no packaging edit.
"""

from setuptools import find_packages, setup

FOLDERS = ("compress", "export", "policies", "runtime")

setup(
    packages=[f"slimkit.{p}" for p in find_packages(include=[f"{f}" for f in FOLDERS] + [f"{f}.*" for f in FOLDERS])],
    package_dir={f"slimkit.{f}": f for f in FOLDERS},
)
