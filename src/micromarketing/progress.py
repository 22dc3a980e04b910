"""The progress-callback protocol shared by every long operation.

The core reports ``(step, done, total)``; the CLI turns it into a Rich progress bar and Python
users may pass any callable (or nothing).
"""

from __future__ import annotations

from collections.abc import Callable

ProgressCallback = Callable[[str, int, int], None]


def noop_progress(step: str, done: int, total: int) -> None:
    """The default callback: report nothing."""
