#!/usr/bin/env python
"""`freemask demo` in a checkout (its launcher): run a trained model on images and draw its predictions. The code is
freemask/commands/demo.py, as for the installed command; `python tools/demo.py --help` lists the arguments."""

import sys

from freemask.commands.demo import main

if __name__ == "__main__":
    sys.exit(main())
