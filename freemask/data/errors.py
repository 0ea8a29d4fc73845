"""The error a user's data can cause (a missing, corrupt or mislabelled file, a missing or empty folder)."""

from ..errors import UserError


class DatasetError(UserError, ValueError):
    """Bad dataset content; the message is one line naming the file or folder and how to fix it."""


class RecordError(DatasetError):
    """One record's file or annotation is bad (a sample DATALOADER.SKIP_BAD_SAMPLES may skip); ``kind`` is the
    problem kind tools/check_dataset.py files it under, ``path`` the file the message names.

    Both are keywords with defaults so that a DataLoader worker, which re-raises an exception as ``type(message)``,
    rebuilds this class rather than a RuntimeError."""

    def __init__(self, message: str, kind: str = "bad_annotation", path: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.path = path
