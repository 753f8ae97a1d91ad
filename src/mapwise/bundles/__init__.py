"""The model bundle: its files, the onnxruntime session that scores it, the MLflow registry that holds it."""
