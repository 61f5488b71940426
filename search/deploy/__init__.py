"""Shipping a chosen network: export to ONNX / TorchScript with a model card (export) and
classifying images with an exported model (predict)."""
