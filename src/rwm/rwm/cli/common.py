"""What the command groups share."""

from __future__ import annotations

import sys


def invocation() -> str:
    """The command as typed, for the metadata of what it makes (models record how they were made)."""
    return "rwm " + " ".join(sys.argv[1:])
