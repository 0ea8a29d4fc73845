"""Logging set-up: console on the main process, one log file per rank under OUTPUT_DIR."""

import contextlib
import logging
import os
import sys
from typing import Optional

from ..errors import file_system_refusal, output_write_error


class LogFileHandler(logging.FileHandler):
    """A log file that stops the run with one line when the file system refuses a write (full, over quota,
    read-only), instead of logging's default: a "--- Logging error ---" traceback on stderr for every later line
    while the run goes on writing nothing. The handler closes itself first, so reporting the error logs no more."""

    def handleError(self, record: logging.LogRecord) -> None:
        error = sys.exc_info()[1]
        refused = file_system_refusal(error) if error is not None else None
        if refused is None:
            super().handleError(record)
            return
        path = self.baseFilename
        for logger in (logging.getLogger("freemask"), logging.getLogger("fvcore")):
            logger.removeHandler(self)
        with contextlib.suppress(OSError):  # closing flushes the same unwritable buffer
            self.close()
        raise output_write_error(refused, path, intact="the lines written before are intact") from None


def setup_logger(output_dir: Optional[str] = None, rank: int = 0, name: str = "freemask") -> logging.Logger:
    """Configure the ``freemask`` logger (and fvcore's) once; later calls return it unchanged.

    Only rank 0 prints to the console, so an 8-GPU run reads like a 1-GPU run; every rank writes its own file
    (``log.txt``, ``log.txt.rank1`` ...) so a failure on one rank can still be read afterwards.
    """
    logger = logging.getLogger(name)
    if getattr(logger, "_freemask_configured", False):
        return logger
    logger.setLevel(logging.INFO)
    logger.propagate = False
    formatter = logging.Formatter("[%(asctime)s %(name)s %(levelname)s] %(message)s", datefmt="%m/%d %H:%M:%S")
    handlers = []
    if rank == 0:
        console = logging.StreamHandler(stream=sys.stdout)
        console.setFormatter(formatter)
        handlers.append(console)
    if output_dir:
        os.makedirs(output_dir, exist_ok=True)
        path = os.path.join(output_dir, "log.txt" if rank == 0 else f"log.txt.rank{rank}")
        file_handler = LogFileHandler(path)
        file_handler.setFormatter(formatter)
        handlers.append(file_handler)
    for other in (logger, logging.getLogger("fvcore")):
        for handler in handlers:
            other.addHandler(handler)
        other.setLevel(logging.INFO)
        other.propagate = False
    logger._freemask_configured = True  # type: ignore[attr-defined]
    return logger
