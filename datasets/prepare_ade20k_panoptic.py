#!/usr/bin/env python
"""`freemask prepare ade20k-panoptic` in a checkout (its launcher). The code is
freemask/commands/prepare/ade20k_panoptic.py, as for the installed command;
`python datasets/prepare_ade20k_panoptic.py --help` says what it writes and lists the arguments."""

import sys

from freemask.commands.prepare.ade20k_panoptic import main

if __name__ == "__main__":
    sys.exit(main())
