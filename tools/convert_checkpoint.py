#!/usr/bin/env python
"""`freemask convert` in a checkout (its launcher): convert a released checkpoint for MODEL.WEIGHTS. The code is
freemask/commands/convert.py, as for the installed command; `python tools/convert_checkpoint.py --help` lists the
arguments."""

import sys

from freemask.commands.convert import main

if __name__ == "__main__":
    sys.exit(main())
