#!/usr/bin/env python
"""`freemask prepare voc-sem-seg` in a checkout (its launcher). The code is freemask/commands/prepare/voc_sem_seg.py, as
for the installed command; `python datasets/prepare_voc_sem_seg.py --help` says what it writes and lists the
arguments."""

import sys

from freemask.commands.prepare.voc_sem_seg import main

if __name__ == "__main__":
    sys.exit(main())
