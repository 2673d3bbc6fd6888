"""The body of every node's `main()`: init, construct, spin until Ctrl-C or shutdown, clean up."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node

N = TypeVar("N", bound=Node)


def spin_node(factory: Callable[[], N], args: list[str] | None = None) -> N | None:
    """Run the node that `factory` builds; returns it (destroyed) so callers can read its final state."""
    rclpy.init(args=args)
    node = None
    try:
        node = factory()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RuntimeError:
        # rclpy can fail to take a message while a signal shuts the context down under load; that is a
        # shutdown, not a failure. Anything else while the context is still up is re-raised.
        if rclpy.ok(context=node.context if node is not None else None):
            raise
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return node
