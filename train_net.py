#!/usr/bin/env python
"""Train or evaluate a segmentation model: detectron2's train_net.py interface without detectron2.

python train_net.py --config-file configs/toy/semantic_fpn_R18_toy.yaml --num-gpus 8 [KEY VALUE ...]
python train_net.py --config-file X.yaml --eval-only MODEL.WEIGHTS output/model_final.pth
python train_net.py --config-file X.yaml --resume
"""

import sys

from freemask.checkpoint import Checkpointer, CheckpointError
from freemask.config import ConfigError
from freemask.data.catalog import DatasetNotRegisteredError
from freemask.data.errors import DatasetError
from freemask.engine import Trainer, default_argument_parser, default_setup, launch, setup_cfg

# Mistakes a user can make; each is reported as one line instead of a traceback.
USER_ERRORS = (
    ConfigError,
    CheckpointError,
    DatasetError,
    DatasetNotRegisteredError,
    FloatingPointError,
    FileNotFoundError,
)


def main(args) -> dict:
    cfg = default_setup(setup_cfg(args.config_file, args.opts), args)
    if args.eval_only:
        if not cfg.MODEL.WEIGHTS:
            raise CheckpointError("--eval-only needs the weights to evaluate: append MODEL.WEIGHTS path/to/model.pth")
        model = Trainer.build_model(cfg)
        checkpointer = Checkpointer(model, cfg.OUTPUT_DIR, allow_unsafe=cfg.MODEL.ALLOW_UNSAFE_WEIGHTS, strict=True)
        checkpointer.load(cfg.MODEL.WEIGHTS)
        return Trainer.test(cfg, model)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def run(args) -> None:
    """Worker entry point: a user error becomes one line on stderr and exit code 1."""
    try:
        main(args)
    except USER_ERRORS as e:
        sys.exit(f"error: {one_line(e)}")


def one_line(error: BaseException) -> str:
    """The error's own message, also when a DataLoader worker re-raised it wrapped in the worker's traceback."""
    lines = str(error.args[0] if error.args else error).strip().splitlines()
    last = lines[-1] if lines else type(error).__name__
    prefix = f"{type(error).__module__}.{type(error).__name__}: "
    return last[len(prefix) :] if last.startswith(prefix) else last


if __name__ == "__main__":
    args = default_argument_parser(__doc__).parse_args()
    try:
        setup_cfg(args.config_file, args.opts)  # fail on a bad config before spawning any worker
    except ConfigError as e:
        sys.exit(f"error: {e}")
    launch(run, args.num_gpus, args.num_machines, args.machine_rank, args.dist_url, args=(args,))
