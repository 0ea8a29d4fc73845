#!/usr/bin/env python
"""`freemask compare` in a checkout (its launcher): per-class IoU gains of two runs, as a table and a bar chart.
The code is freemask/commands/compare.py, as for the installed command; `python tools/compare_runs.py --help` lists
the arguments."""

import sys

from freemask.commands.compare import main

if __name__ == "__main__":
    sys.exit(main())
