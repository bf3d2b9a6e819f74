"""A time limit for pure-Python work that may not finish (third-party graph analysis on a foreign model).

:func:`time_limit` interrupts the code it wraps once its seconds have passed, by raising
:class:`OutOfTime` at the next Python function call (``sys.settrace`` on the current thread; any
previous trace function, a debugger's or coverage's, is restored afterwards). Code stuck inside one C call
is not interrupted; the work it guards (torch-pruning's dependency search) is Python loops.
``OutOfTime`` derives from ``BaseException`` so that a library's broad ``except Exception`` does not
swallow it.

Example:
    >>> with time_limit(30.0):
    ...     result = sum(range(10))
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator

__all__ = ["OutOfTime", "time_limit", "ANALYSIS_SECONDS"]

ANALYSIS_SECONDS = 30.0  # the most one channel analysis of a model may take before it is refused


class OutOfTime(BaseException):
    """Raised inside :func:`time_limit`'s block when its time is up."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Run the block for at most ``seconds`` (wall clock), else raise :class:`OutOfTime` from inside it."""
    end = time.monotonic() + seconds

    def trace(frame, event, arg):
        if time.monotonic() > end:
            raise OutOfTime(f"did not finish within {seconds:g} s")
        return None  # no per-line tracing: only function calls are checked

    previous = sys.gettrace()
    sys.settrace(trace)
    try:
        yield
    finally:
        sys.settrace(previous)
