#!/usr/bin/env python
"""`freemask resample` in a checkout (its launcher): hardness-aware re-sampling of synthetic pairs. The code is
freemask/commands/resample.py, as for the installed command; `python tools/resample_syn.py --help` lists the
arguments."""

import sys

from freemask.commands.resample import main

if __name__ == "__main__":
    sys.exit(main())
