"""``python -m freemask <command> [arguments]``: the ``freemask`` command without the console script (a checkout
that is not installed, or a venv whose bin/ is not on PATH)."""

import sys

from freemask.commands import main

if __name__ == "__main__":  # not when multiprocessing re-imports this module in a spawned worker
    sys.exit(main(program="python -m freemask"))
