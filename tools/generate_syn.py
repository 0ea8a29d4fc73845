#!/usr/bin/env python
"""`freemask generate` in a checkout (its launcher): paint synthetic images from real masks. The code is
freemask/commands/generate.py, as for the installed command; `python tools/generate_syn.py --help` lists the
arguments."""

import sys

from freemask.commands.generate import main

if __name__ == "__main__":
    sys.exit(main())
