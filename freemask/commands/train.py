"""Train or evaluate a segmentation model: detectron2's train_net.py interface without detectron2.
Installed: `freemask train ARGS`; in a checkout also `python train_net.py ARGS`, as below.

python train_net.py --config-file configs/toy/semantic-segmentation/semantic_fpn_R18_toy.yaml --num-gpus 8 \
    [KEY VALUE ...]
python train_net.py --config-file X.yaml --eval-only MODEL.WEIGHTS output/model_final.pth
python train_net.py --config-file X.yaml --resume
"""

import argparse
from typing import Optional, Sequence

from freemask import cli
from freemask.arguments import default_argument_parser  # torch-free: --help answers before anything heavy loads


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``freemask train`` / ``train_net.py``: the early checks, then one process per GPU."""
    args = default_argument_parser(__doc__).parse_args(argv)
    return cli.run(launch_workers, args, checks=[lambda: check_before_launch(args)])


def run_training(args: argparse.Namespace) -> dict:
    """One worker's job: train (or evaluate with --eval-only); returns the evaluation results."""
    from freemask.checkpoint import load_trained_model
    from freemask.engine import default_setup, setup_cfg
    from freemask.engine.trainer import Trainer

    cfg = default_setup(setup_cfg(args.config_file, args.opts), args)
    if args.eval_only:
        model = load_trained_model(cfg, "--eval-only needs the weights to evaluate")
        return Trainer.test(cfg, model)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def check_before_launch(args: argparse.Namespace) -> None:
    """The config, OUTPUT_DIR and the datasets, before any worker is spawned or model built."""
    cli.check_config_path(args.config_file)  # before the imports below, which load torch
    from freemask.engine.defaults import register_custom_dataset, setup_cfg

    cfg = setup_cfg(args.config_file, args.opts)
    if args.eval_only and not cfg.MODEL.WEIGHTS:
        from freemask.checkpoint import CheckpointError

        raise CheckpointError("--eval-only needs the weights to evaluate: append MODEL.WEIGHTS path/to/model.pth")
    cli.check_output_folders([("OUTPUT_DIR", cfg.OUTPUT_DIR)])
    register_custom_dataset(cfg)
    cli.check_datasets(cli.config_datasets(cfg, args.eval_only))


def launch_workers(args: argparse.Namespace) -> None:
    from freemask.engine import launch

    launch(cli.in_worker, args.num_gpus, args.num_machines, args.machine_rank, args.dist_url, args=(run_training, args))
