#!/usr/bin/env python
"""`freemask convert-clip` in a checkout (its launcher): convert OpenAI's CLIP file for CLIP_WEIGHTS. The code is
freemask/commands/convert_clip.py, as for the installed command; `python tools/convert_clip.py --help` lists the
arguments."""

import sys

from freemask.commands.convert_clip import main

if __name__ == "__main__":
    sys.exit(main())
