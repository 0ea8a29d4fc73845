"""Logging set-up: console on the main process, one log file per rank under OUTPUT_DIR."""

import logging
import os
import sys
from typing import Optional


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
        file_handler = logging.FileHandler(path)
        file_handler.setFormatter(formatter)
        handlers.append(file_handler)
    for other in (logger, logging.getLogger("fvcore")):
        for handler in handlers:
            other.addHandler(handler)
        other.setLevel(logging.INFO)
        other.propagate = False
    logger._freemask_configured = True  # type: ignore[attr-defined]
    return logger
