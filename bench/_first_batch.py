#!/usr/bin/env python
"""``train_net.py`` with one seam, for bench/data_scale.py: when a rank receives its first training batch it writes
``<$FREEMASK_BENCH_MARKERS>/rank_<pid>.json`` (its pid, the wall time) and then waits to be killed.

Everything up to that batch is the project's own code path: train_net.py's argument parser, checks, ``launch``
(ranks through its start method), ``Trainer`` and ``build_train_loader``. The seam is ``Trainer.build_train_loader``
(the trainer's documented override point), wrapped at import of this module, which every rank imports again as
``__mp_main__`` under forkserver or spawn, so the wrapper is in place in every rank. Waiting instead of training
keeps the ranks and their loader workers alive, at their first-batch memory, until bench/data_scale.py has read it.

    FREEMASK_BENCH_MARKERS=DIR FREEMASK_BENCH_CODE=REPO python bench/_first_batch.py <train_net.py arguments>
"""

import json
import os
import sys
import time

CODE = os.environ.get("FREEMASK_BENCH_CODE", os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, CODE)  # train_net.py of the code under test

from freemask import cli  # noqa: E402
from freemask.arguments import default_argument_parser  # noqa: E402
from freemask.engine.trainer import Trainer  # noqa: E402

try:  # the training command; in code from before freemask/commands, train_net.py held these functions
    from freemask.commands import train as train_net  # noqa: E402
except ImportError:
    import train_net  # noqa: E402

WAIT_S = 3600.0


class FirstBatchMarker:
    """Iterates ``loader``; at its first batch, writes this rank's marker and sleeps until killed."""

    def __init__(self, loader) -> None:
        self.loader = loader

    def __iter__(self):
        iterator = iter(self.loader)
        batch = next(iterator)
        arrived = time.time()
        folder = os.environ["FREEMASK_BENCH_MARKERS"]
        path = os.path.join(folder, f"rank_{os.getpid()}.json")
        with open(path + ".tmp", "w") as f:
            json.dump({"pid": os.getpid(), "time": arrived}, f)
        os.replace(path + ".tmp", path)
        time.sleep(WAIT_S)
        yield batch


_build_train_loader = Trainer.build_train_loader.__func__


def _marked_train_loader(cls, cfg, start_iter):
    return FirstBatchMarker(_build_train_loader(cls, cfg, start_iter))


Trainer.build_train_loader = classmethod(_marked_train_loader)


if __name__ == "__main__":
    # train_net.py's own __main__ block, with its functions.
    arguments = default_argument_parser(train_net.__doc__).parse_args()
    sys.exit(cli.run(train_net.launch_workers, arguments, checks=[lambda: train_net.check_before_launch(arguments)]))
