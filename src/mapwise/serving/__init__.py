"""Serving: ONNX export, bundles, the HTTP service and batch audiences."""
