"""The one error type of the CLIP package: a CLIP file, architecture name or prompt setting the user can fix."""

from ...errors import UserError


class ClipError(UserError, ValueError):
    """CLIP weights that are missing, unsafe, corrupt or of another architecture; a prompt that cannot be built; a
    prompt checkpoint that does not fit. The message names the file or config key and the fix."""
