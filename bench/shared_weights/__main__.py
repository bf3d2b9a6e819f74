"""``python -m bench.shared_weights [--quick] [--row NAME] [--render]``: the runner's
``python -m bench shared_weights ...`` (bench/runner.py), kept as a shorter name."""

from __future__ import annotations

import sys

from bench.runner import main

if __name__ == "__main__":
    raise SystemExit(main(["shared_weights", *sys.argv[1:]]))
