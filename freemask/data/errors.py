"""The error a user's data can cause (a missing, corrupt or mislabelled file, a missing or empty folder)."""

from ..errors import UserError


class DatasetError(UserError, ValueError):
    """Bad dataset content; the message is one line naming the file or folder and how to fix it."""
