"""Converters: one module per target format. Every one starts from the ONNX export of ``converters.onnx``."""
