"""The error a user's data can cause (a missing, corrupt or mislabelled file, a missing or empty folder)."""


class DatasetError(ValueError):
    """Bad dataset content; the message is one line naming the file or folder and how to fix it."""
