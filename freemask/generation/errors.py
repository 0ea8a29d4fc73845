"""The error a user can cause while setting up or running generation (missing weights, hub names, unknown datasets).

Importable without torch or diffusers, so ``tools/generate_syn.py`` can report it before the heavy imports.
"""

from ..errors import UserError


class GenerationError(UserError, ValueError):
    """One line naming the file, folder or flag that is wrong and how to fix it."""
