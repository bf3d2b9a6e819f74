"""The GPU check of issue 18: ``python -m bench.gpu`` (see ``__main__.py`` and docs/gpu-check.md).

Modules: ``families`` (what is built), ``backends`` (every way to run it), ``measure`` (parity, latency,
interleaved ratios), ``check`` (one family end to end), ``report`` (targets and Markdown), ``env``
(machine facts, time guard).
"""
