"""Only for bench/n2n.py and bench/_n2n_*.py, which still run as scripts with bench/ on ``sys.path``
(``from _bench import ...``) until issue 17 moves them into bench/n2n/; delete this file with them.
Everything else imports :mod:`bench.common`."""

from common import atomic_write, raw_session  # noqa: F401  (bench/ is sys.path[0] for those scripts)
