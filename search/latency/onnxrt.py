"""The shipped runtime: a network exported to ONNX and run by ONNX Runtime on the CPU.

``castsearch export`` ships this, and the search's latency objective times it (by default),
so a candidate is judged in the runtime a user deploys. Export is torch's dynamo exporter
with a dynamic batch axis (the older TorchScript-based exporter cannot export composer's
BlurMaxPool2d, whose filter depends on the input's shape); input ``image`` float32
``[N, C, H, W]`` = uint8 pixels / 255, output ``logits``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

INPUT_NAME, OUTPUT_NAME = "image", "logits"


class UnexportableNetwork(ValueError):
    """A network torch cannot export to ONNX (one-line reason)."""


def export_onnx(model: nn.Module, example: torch.Tensor, path: Path | None = None) -> bytes | None:
    """Export ``model`` (traced on ``example``, a batch of at least 2 so that the batch axis
    stays dynamic) to ONNX: to ``path``, or, without one, return the model's bytes."""
    onnx_logger = logging.getLogger("torch.onnx")
    level = onnx_logger.level
    onnx_logger.setLevel(logging.ERROR)  # torchvision op schemas it does not use
    was_training = model.training
    model.eval()
    try:
        program = torch.onnx.export(model, (example,), None if path is None else str(path),
                                    input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                    dynamic_shapes=({0: torch.export.Dim("batch")},), dynamo=True,
                                    external_data=False, optimize=True, verbose=False)
    except Exception as e:  # torch.export raises many kinds; the search needs the reason, not a crash
        raise UnexportableNetwork(f"ONNX export failed: {type(e).__name__}: {str(e).splitlines()[0]}") from None
    finally:
        onnx_logger.setLevel(level)
        model.train(was_training)
    return None if path is not None else program.model_proto.SerializeToString()


def ort_session(model: Path | bytes, threads: int = 1) -> ort.InferenceSession:
    """An ONNX Runtime CPU session on ``threads`` intra-op threads, run sequentially."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(model if isinstance(model, bytes) else str(model), options,
                                providers=["CPUExecutionProvider"])


def ort_call(session: ort.InferenceSession, shape: tuple[int, int, int], batch_size: int):
    """A zero-argument call running ``session`` on a fixed random batch (for timing)."""
    name = session.get_inputs()[0].name
    x = np.random.default_rng(0).random((batch_size, *shape), dtype=np.float32)
    return lambda: session.run(None, {name: x})


def runtime_version() -> str:
    return f"onnxruntime {ort.__version__}"
