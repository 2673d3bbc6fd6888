"""Shared handling of exported ONNX files."""

from __future__ import annotations

import onnx


def strip_debug_metadata(model: onnx.ModelProto) -> onnx.ModelProto:
    """Drop per-node metadata (the exporter's stack traces, with the exporting machine's paths)."""
    for node in model.graph.node:
        del node.metadata_props[:]
    return model
