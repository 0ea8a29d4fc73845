#!/usr/bin/env python
"""`freemask filter` in a checkout (its launcher): FreeMask filtering of synthetic masks. The code is
freemask/commands/filter.py, as for the installed command; `python tools/filter_syn.py --help` lists the arguments."""

import sys

from freemask.commands.filter import main

if __name__ == "__main__":
    sys.exit(main())
