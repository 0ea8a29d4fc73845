#!/usr/bin/env python
"""`freemask pipeline` in a checkout (its launcher): the whole FreeMask pipeline on the toy dataset. The code is
freemask/commands/pipeline.py, as for the installed command; `python tools/run_freemask_pipeline.py --help` lists the
arguments."""

import sys

from freemask.commands.pipeline import main

if __name__ == "__main__":
    sys.exit(main())
