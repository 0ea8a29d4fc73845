#!/usr/bin/env python
"""`freemask plot` in a checkout (its launcher): loss, learning-rate and mIoU curves of training runs. The code is
freemask/commands/plot.py, as for the installed command; `python tools/plot_metrics.py --help` lists the arguments."""

import sys

from freemask.commands.plot import main

if __name__ == "__main__":
    sys.exit(main())
