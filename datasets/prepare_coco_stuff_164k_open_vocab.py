#!/usr/bin/env python
"""`freemask prepare coco-stuff-164k-open-vocab` in a checkout (its launcher). The code is
freemask/commands/prepare/coco_stuff_164k_open_vocab.py, as for the installed command;
`python datasets/prepare_coco_stuff_164k_open_vocab.py --help` says what it writes and lists the arguments."""

import sys

from freemask.commands.prepare.coco_stuff_164k_open_vocab import main

if __name__ == "__main__":
    sys.exit(main())
