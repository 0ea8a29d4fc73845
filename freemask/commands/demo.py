"""Run a trained model on images and write image | prediction overlay figures with a legend of the predicted classes.
Installed: `freemask demo ARGS`; in a checkout also `python tools/demo.py ARGS`, as below.

  python tools/demo.py --config-file configs/toy/semantic-segmentation/semantic_fpn_R18_toy.yaml --input photos/ \\
      --output vis/ MODEL.WEIGHTS output/toy_semantic_fpn_R18/model_final.pth
  python tools/demo.py --config-file X.yaml --input 'shots/*.jpg' --input a.png --output vis/ --opacity 0.6 \\
      --save-labels MODEL.WEIGHTS ckpt.pth MODEL.DEVICE cpu
  python tools/demo.py --config-file configs/toy/panoptic-segmentation/mask2former_R18_toy_panoptic.yaml \\
      --input photos/ --output vis/ --task instance --score-threshold 0.3 \\
      MODEL.WEIGHTS output/toy_mask2former_R18_panoptic/model_final.pth
  python tools/demo.py --config-file OPEN_VOCABULARY.yaml --input photos/ --output vis/ \\
      --vocabulary "cat,dog,traffic cone" MODEL.WEIGHTS ckpt.pth

--input takes image files, folders (their image files, not recursive) and glob patterns. Each image is predicted as
evaluation does: resized to INPUT.MIN_SIZE_TEST / MAX_SIZE_TEST, the config's TEST.* inference mode (whole image
unless TEST.SLIDING_WINDOW / TEST.AUG are enabled), outputs resized back to the original size. Colours and class names
come from the metadata of DATASETS.TEST[0], or from --vocabulary for an open-vocabulary model (one whose forward takes
a vocabulary: every typed name is a thing class). Writes <output>/<stem>.png: the image and the prediction overlay
side by side (enlarged by an integer factor when the shorter side is under 256 pixels) with a legend of the predicted
classes.

--task picks the output drawn when MODEL.MASK_FORMER.TEST turns on several (SEMANTIC_ON, PANOPTIC_ON, INSTANCE_ON);
the default is the most specific one on: panoptic, else instance, else semantic. semantic colours each pixel by
its class; panoptic fills each segment with its class colour, outlines it in white and writes its class on it;
instance does the same for each instance above --score-threshold, with its score ("car 0.87"), a higher score drawn
over a lower one; --task all stacks the rows of every task on, each titled. With --save-labels also
<output>/labels/<stem>.png, the semantic class ids at the original size (uint8, or uint16 beyond 256 classes).
Files are written atomically and inputs are never written; existing outputs are skipped, so an interrupted run
resumes (--overwrite redoes them, also after changing --task). Works on CPU: the device is MODEL.DEVICE.
"""

import argparse
import glob
import logging
import os
from collections.abc import Sequence

import numpy as np
from tqdm import tqdm

from freemask import cli
from freemask.arguments import DEMO_TASKS
from freemask.data.errors import DatasetError
from freemask.data.mappers.semantic import SemSegDatasetMapper, read_image
from freemask.errors import ArgumentError, PathNotFoundError
from freemask.utils.logger import setup_logger
from freemask.utils.visualizer import save_image

# torch, the model and the engine are imported where they are used, so that --help answers without loading them.

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
LABELS_DIR = "labels"


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Trailing KEY VALUE pairs override the config, e.g. MODEL.WEIGHTS ckpt.pth MODEL.DEVICE cpu",
    )
    parser.add_argument("--config-file", required=True, metavar="FILE", help="config the model was trained with")
    parser.add_argument(
        "--input", required=True, action="append", metavar="PATH", help="image, folder or glob pattern (repeatable)"
    )
    parser.add_argument("--output", required=True, metavar="DIR", help="folder for the overlays")
    parser.add_argument("--opacity", type=float, default=0.5, help="weight of the class colours (0..1, default 0.5)")
    parser.add_argument(
        "--task",
        choices=(*DEMO_TASKS, "all"),
        help="output to draw when the config turns on several (default: the most specific on: panoptic, instance, "
        "semantic); all = one row per task on",
    )
    parser.add_argument(
        "--score-threshold", type=float, default=0.5, help="instances drawn: score at least this (0..1, default 0.5)"
    )  # 0.5: detectron2's demo default (--confidence-threshold)
    parser.add_argument(
        "--vocabulary",
        metavar="NAMES",
        help='comma-separated class names for an open-vocabulary model, e.g. "cat,dog,traffic cone"',
    )
    parser.add_argument("--save-labels", action="store_true", help=f"also write class-id PNGs to <output>/{LABELS_DIR}")
    parser.add_argument("--overwrite", action="store_true", help="redo images whose outputs exist")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (logs, CI)")
    parser.add_argument("opts", default=[], nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    return parser


def find_inputs(patterns: Sequence[str]) -> list[str]:
    """Image paths named by ``patterns`` in the given order: a file as is (checked when read), a folder's image files
    sorted, a glob's matching image files sorted. A pattern matching nothing, or two inputs with one stem (their
    outputs would collide), is a PathNotFoundError / DatasetError naming it."""
    paths: list[str] = []
    for pattern in patterns:
        if os.path.isfile(pattern):
            paths.append(pattern)
            continue
        if os.path.isdir(pattern):
            found = sorted(os.path.join(pattern, n) for n in os.listdir(pattern))
        else:
            found = sorted(glob.glob(pattern, recursive=True))
        images = [p for p in found if os.path.isfile(p) and p.lower().endswith(IMAGE_EXTENSIONS)]
        if not images:
            what = "folder" if os.path.isdir(pattern) else "file or pattern"
            raise PathNotFoundError(
                f"--input {pattern}: no such {what} with images ({', '.join(IMAGE_EXTENSIONS)}); check the path"
            )
        paths.extend(images)
    paths = list(dict.fromkeys(paths))
    stems: dict[str, str] = {}
    for path in paths:
        stem = os.path.splitext(os.path.basename(path))[0]
        if stem in stems:
            raise DatasetError(
                f"--input: {stems[stem]} and {path} would both write {stem}.png; rename one or run them separately"
            )
        stems[stem] = path
    return paths


def check_output(output: str, paths: Sequence[str]) -> None:
    """DatasetError when the output folder holds inputs: an overlay <stem>.png could replace an input image."""
    target = os.path.realpath(output)
    for folder in sorted({os.path.dirname(p) for p in paths}):
        if os.path.realpath(folder or ".") in (target, os.path.join(target, LABELS_DIR)):
            raise DatasetError(f"--output {output} holds input images; inputs are never overwritten: choose another")


def model_input(image: np.ndarray, mapper: SemSegDatasetMapper) -> dict:
    """The evaluation input of an RGB image, as the test mapper builds it: resized to the test size, CHW uint8 in
    INPUT.FORMAT, with the original size the scores are resized back to."""
    import torch

    resized = mapper.resize_for_test(image)
    if mapper.image_format == "BGR":
        resized = resized[:, :, ::-1]
    chw = torch.from_numpy(np.ascontiguousarray(resized.transpose(2, 0, 1)))
    return {"image": chw, "height": image.shape[0], "width": image.shape[1]}


def read_input(path: str) -> np.ndarray:
    try:
        return read_image(path)
    except DatasetError:
        raise DatasetError(
            f"{path}: not a readable image (truncated, or not an image file); remove it from --input"
        ) from None


def run(args: argparse.Namespace) -> tuple[int, int, tuple[str, ...]]:
    """Returns (written, skipped, tasks drawn)."""
    from freemask.checkpoint import load_trained_model
    from freemask.engine import demo
    from freemask.engine.defaults import register_custom_dataset, setup_cfg

    cfg = setup_cfg(args.config_file, args.opts)
    paths = find_inputs(args.input)
    register_custom_dataset(cfg)
    typed = demo.parse_vocabulary(args.vocabulary, cfg) if args.vocabulary is not None else None
    classes = demo.demo_classes(cfg, typed)
    tasks = demo.choose_tasks(cfg, args.task)
    if args.save_labels and "semantic" not in demo.tasks_on(cfg):
        raise ArgumentError(
            "--save-labels writes semantic class ids, but the config has MODEL.MASK_FORMER.TEST.SEMANTIC_ON off; "
            "drop --save-labels or append MODEL.MASK_FORMER.TEST.SEMANTIC_ON True"
        )
    postprocess = demo.demo_postprocess(cfg, classes)
    mapper = SemSegDatasetMapper.from_config(cfg, is_train=False)
    check_output(args.output, paths)
    outputs = {p: os.path.join(args.output, os.path.splitext(os.path.basename(p))[0] + ".png") for p in paths}

    def labels_path(out: str) -> str:
        return os.path.join(args.output, LABELS_DIR, os.path.basename(out))

    def done(path: str) -> bool:
        out = outputs[path]
        return os.path.isfile(out) and (not args.save_labels or os.path.isfile(labels_path(out)))

    todo = paths if args.overwrite else [p for p in paths if not done(p)]
    if not todo:
        return 0, len(paths), tasks
    logging.getLogger("freemask").info("demo: drawing %s (--task to choose)", ", ".join(tasks))
    model = load_trained_model(cfg, "no MODEL.WEIGHTS given")
    os.makedirs(os.path.join(args.output, LABELS_DIR) if args.save_labels else args.output, exist_ok=True)
    dtype = np.uint8 if len(classes.names) <= 256 else np.uint16
    for path in tqdm(todo, desc="demo", unit="img", disable=args.no_progress):
        image = read_input(path)
        prediction = demo.predict(model, model_input(image, mapper), postprocess, classes.vocabulary)
        if args.save_labels:
            save_image(labels_path(outputs[path]), demo.semantic_labels(prediction).astype(dtype))
        figure = demo.render(
            tasks, image, prediction, classes, args.opacity, args.score_threshold, postprocess, os.path.basename(path)
        )
        save_image(outputs[path], figure)
    return len(todo), len(paths) - len(todo), tasks


def main(argv: Sequence[str] | None = None) -> int:
    """``freemask demo`` / ``tools/demo.py``: :func:`run_demo` with its log on the console."""
    return run_demo(argv, console_log=True)


def run_demo(argv: Sequence[str] | None = None, console_log: bool = False) -> int:
    """Parse ``argv`` and draw every input; a caller in this process keeps its own logging unless ``console_log``."""
    parser = argument_parser()
    args = parser.parse_args(argv)
    if not 0.0 <= args.opacity <= 1.0:
        parser.error(f"--opacity must be in [0, 1], got {args.opacity}")
    if not 0.0 <= args.score_threshold <= 1.0:
        parser.error(f"--score-threshold must be in [0, 1], got {args.score_threshold}")
    checks = [
        lambda: cli.check_config_path(args.config_file),
        lambda: cli.check_output_folders([("--output", args.output)]),
    ]
    if console_log:
        setup_logger()
    return cli.run(draw, args, checks=checks)


def draw(args: argparse.Namespace) -> None:
    """:func:`run`, then the one summary line."""
    written, skipped, tasks = run(args)
    note = f", skipped {skipped} with existing outputs (--overwrite to redo)" if skipped else ""
    print(f"wrote {written} overlays to {args.output} ({', '.join(tasks)}){note}")
