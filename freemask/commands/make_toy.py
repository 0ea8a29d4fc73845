"""Generate the embedded toy dataset (real + synthetic pairs with planted defects) under <root>/toy.
Installed: `freemask make-toy ARGS`; in a checkout also `python tools/make_toy_dataset.py ARGS`, as below.

    python tools/make_toy_dataset.py                       # $DETECTRON2_DATASETS/toy (default ./datasets/toy)
    python tools/make_toy_dataset.py --size 512x683 --num-train 200 --seeds 20   # ADE-like sizes for benchmarks

Does nothing when a complete dataset with the same parameters is already there; --force regenerates.
"""

import argparse
import os
import time
from typing import Optional, Sequence

from freemask import cli
from freemask.toy.generator import ToyParams, generate_toy_dataset, parse_size


def _size(text: str):
    try:
        return parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``freemask make-toy`` / ``tools/make_toy_dataset.py``: :func:`make_toy` through the command-line runner."""
    return cli.run(make_toy, argv)


def make_toy(argv: Optional[Sequence[str]] = None) -> None:
    """Write the toy dataset unless an identical one is there."""
    defaults = ToyParams()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--root",
        default=os.environ.get("DETECTRON2_DATASETS", "datasets"),
        help="datasets folder; the toy dataset goes to ROOT/toy (default: $DETECTRON2_DATASETS or ./datasets)",
    )
    parser.add_argument("--num-train", type=int, default=defaults.num_train, help="real training images")
    parser.add_argument("--num-val", type=int, default=defaults.num_val, help="validation images")
    parser.add_argument(
        "--seeds",
        type=int,
        default=defaults.num_seeds,
        help="synthetic copies per real training mask (seeds 42, 43, ...)",
    )
    parser.add_argument(
        "--size",
        type=_size,
        default=(defaults.height, defaults.width),
        help="HEIGHTxWIDTH of every image (default 128x128)",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed of the whole dataset")
    parser.add_argument("--force", action="store_true", help="regenerate even if an identical dataset exists")
    args = parser.parse_args(argv)
    try:
        params = ToyParams(args.num_train, args.num_val, args.seeds, *args.size, seed=args.seed)
    except ValueError as e:
        parser.error(str(e))

    target = os.path.join(args.root, "toy")
    start = time.perf_counter()
    if generate_toy_dataset(args.root, params, force=args.force):
        n_syn = params.num_train * params.num_seeds
        print(
            f"Wrote the toy dataset to {target}: {params.num_train} train, {params.num_val} val, {n_syn} synthetic "
            f"images of {params.height}x{params.width} in {time.perf_counter() - start:.1f}s"
        )
    else:
        print(
            f"The toy dataset in {target} is already complete with these parameters; nothing to do "
            "(--force regenerates)"
        )
