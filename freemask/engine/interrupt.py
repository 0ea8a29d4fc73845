"""Ctrl-C (SIGINT) as a request to stop at the next consistent point, instead of a traceback that saves nothing.

The first Ctrl-C only sets :attr:`StopRequest.requested`; the training loop finishes the iteration it is in (so
model, optimizer and scheduler agree on the iteration), saves a checkpoint and stops. A second Ctrl-C restores
Python's handler and interrupts at once, for a user who does not want to wait for the end of an evaluation.
"""

import logging
import signal
import threading
from types import FrameType
from typing import Any, Optional

logger = logging.getLogger(__name__)


class StopRequest:
    """Context manager catching SIGINT while it is active (in the main thread only: signals cannot be handled in
    others, where it does nothing)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> "StopRequest":
        self.requested = False
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def _handle(self, signum: int, frame: Optional[FrameType]) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, self._previous or signal.default_int_handler)
        logger.warning(
            "Ctrl-C: stopping after this iteration and saving a checkpoint (press Ctrl-C again to stop at once, "
            "without saving)"
        )
