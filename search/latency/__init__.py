"""Measuring a network's latency: the protocol (measure), the ONNX Runtime session (onnxrt),
the policy that makes a verdict load-proof (screen) and the quiet slots of training workers (quiet)."""
