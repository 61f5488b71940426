"""What the rest of castsearch reads about latency without importing torch: the runtimes a
latency can be timed in, the one switch to the quick timing protocol, and the keys of the
study attrs the latency policy keeps.

The study's code (:mod:`search.study.record`, :mod:`search.study.front`) imports these; the
latency package imports nothing of the study's, so there is no cycle between them.
"""

from __future__ import annotations

import os

__all__ = ["CACHE_PREFIX", "DEFAULT_RUNTIME", "LIMIT_PREFIX", "QUICK_ENV", "RUNTIMES", "quick_protocol"]

# What the latency objective is timed in: the network exported to ONNX and run by ONNX Runtime
# (what castsearch export ships; default), or torch eager (search.latency.measure).
RUNTIMES = ("onnxruntime", "torch")
DEFAULT_RUNTIME = "onnxruntime"

QUICK_ENV = "CASTSEARCH_TIMING"  # =quick: every timing uses the quick protocol (the test suite's searches)

# study user attrs (search.latency.screen): a network's measurement, and a relative limit as resolved
CACHE_PREFIX = "latency:"
LIMIT_PREFIX = "latency_limit:"


def quick_protocol() -> bool:
    """Whether ``$CASTSEARCH_TIMING`` is ``quick``: every timing then uses the quick protocol
    and nothing waits between timings (the test suite sets it, so that its searches do not
    spend minutes timing). The only place the switch is read, through
    :meth:`search.latency.measure.Timing.current`: a :class:`search.latency.timer.Timer` reads
    it once, when it is built."""
    return os.environ.get(QUICK_ENV) == "quick"
