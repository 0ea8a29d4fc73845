#!/usr/bin/env python
"""`freemask prepare coco-full-task` in a checkout (its launcher). The code is
freemask/commands/prepare/coco_full_task.py, as for the installed command;
`python datasets/prepare_coco_full_task.py --help` says what it writes and lists the arguments."""

import sys

from freemask.commands.prepare.coco_full_task import main

if __name__ == "__main__":
    sys.exit(main())
