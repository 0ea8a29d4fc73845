#!/usr/bin/env python
"""`freemask train` in a checkout (the repository's entry point): train or evaluate a model (detectron2's train_net.py
flags). The code is freemask/commands/train.py, as for the installed command; `python train_net.py --help` lists the
arguments."""

import sys

from freemask.commands.train import main

if __name__ == "__main__":
    sys.exit(main())
