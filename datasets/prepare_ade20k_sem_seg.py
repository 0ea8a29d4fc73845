#!/usr/bin/env python
"""`freemask prepare ade20k-sem-seg` in a checkout (its launcher). The code is
freemask/commands/prepare/ade20k_sem_seg.py, as for the installed command;
`python datasets/prepare_ade20k_sem_seg.py --help` says what it writes and lists the arguments."""

import sys

from freemask.commands.prepare.ade20k_sem_seg import main

if __name__ == "__main__":
    sys.exit(main())
