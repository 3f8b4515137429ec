"""The one base class of every error a user can fix: the command line reports these by message, no traceback."""

from __future__ import annotations

__all__ = ["LightweightError"]


class LightweightError(Exception):
    """A bad input, setting or state, explained in the message; raised before expensive work where possible."""
