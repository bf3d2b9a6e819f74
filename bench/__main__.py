"""``python -m bench <method|all> [--quick] [--out DIR] [--render] [--row NAME] [--list]``: see bench/runner.py."""

import sys

from bench.runner import main

sys.exit(main())
