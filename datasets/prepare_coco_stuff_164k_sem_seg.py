#!/usr/bin/env python
"""`freemask prepare coco-stuff-164k-sem-seg` in a checkout (its launcher). The code is
freemask/commands/prepare/coco_stuff_164k_sem_seg.py, as for the installed command;
`python datasets/prepare_coco_stuff_164k_sem_seg.py --help` says what it writes and lists the arguments."""

import sys

from freemask.commands.prepare.coco_stuff_164k_sem_seg import main

if __name__ == "__main__":
    sys.exit(main())
