#!/usr/bin/env python
"""`freemask visualize` in a checkout (its launcher): draw what the filter removed. The code is
freemask/commands/visualize.py, as for the installed command; `python tools/visualize_filtered.py --help` lists the
arguments."""

import sys

from freemask.commands.visualize import main

if __name__ == "__main__":
    sys.exit(main())
