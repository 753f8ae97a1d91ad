"""Serving, torch-free: the HTTP service over registered bundles (onnxruntime), hot reload, batch audiences."""
