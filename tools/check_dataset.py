#!/usr/bin/env python
"""`freemask check-dataset` in a checkout (its launcher): check every file of registered datasets. The code is
freemask/commands/check_dataset.py, as for the installed command; `python tools/check_dataset.py --help` lists the
arguments."""

import sys

from freemask.commands.check_dataset import main

if __name__ == "__main__":
    sys.exit(main())
