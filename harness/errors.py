"""The one exception the CLI turns into `harness: error: <message>` and a non-zero exit."""
from __future__ import annotations

__all__ = ["HarnessError"]


class HarnessError(Exception):
    """A problem the user can fix (bad name, bad path, bad checkpoint, diverged run).

    The message is one line and says what was expected, so the CLI prints it without a traceback.
    """
