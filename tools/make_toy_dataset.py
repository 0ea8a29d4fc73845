#!/usr/bin/env python
"""`freemask make-toy` in a checkout (its launcher): generate the embedded toy dataset. The code is
freemask/commands/make_toy.py, as for the installed command; `python tools/make_toy_dataset.py --help` lists the
arguments."""

import sys

from freemask.commands.make_toy import main

if __name__ == "__main__":
    sys.exit(main())
