"""Latency: how castsearch times a network, and the policy that makes a latency verdict
load-proof, behind one object built once per run (:class:`search.latency.timer.Timer`).

- ``config``: the runtimes, the quick-protocol switch (``$CASTSEARCH_TIMING``) and the
  study attr keys; no torch, so the study's code reads them cheaply;
- ``measure``: the timing protocol (warm-up, medians, the lowest of ``SPREAD`` single-image
  timings, the CPU-time fallback) and what a network costs (parameters, MACs);
- ``onnxrt``: the ONNX Runtime session a latency is timed in by default;
- ``timer``: the policy (:class:`Timer`: settle, pace, the quiet slot, the protocol's settings);
- ``screen``: the driver's screening of candidates (latency cache, limits, re-check);
- ``retime``: the front's re-timing at the end of a run;
- ``quiet``: the quiet slots (training workers stopped while a verdict is re-timed).

Names are imported lazily, so reading a constant never pays for torch.
"""

from __future__ import annotations

from castmodels.registry import lazy_exports

_EXPORTS = {  # module -> the names it exports
    "search.latency.config": ("DEFAULT_RUNTIME", "RUNTIMES", "QUICK_ENV", "quick_protocol"),
    "search.latency.measure": ("SPREAD", "LatencyResult", "Measurement", "Timing", "measure", "time_single"),
    "search.latency.timer": ("Pacer", "Timer", "settle"),
    "search.latency.screen": ("Screen", "Verdict", "resolve_limits"),
    "search.latency.retime": ("FrontNetwork", "retime_front"),
    "search.latency.quiet": ("Workers",),
}

__all__ = sorted(name for names in _EXPORTS.values() for name in names)

__getattr__ = lazy_exports(__name__, _EXPORTS)
