"""Evaluation: policies in simulation (and later the world model's autoregressive error)."""
