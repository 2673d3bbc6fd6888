"""ONNX export of policies (and later the world model), with parity checks and metadata."""
