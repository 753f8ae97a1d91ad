"""A recommender as a served bundle: the ONNX graphs and the tables serving reads."""
