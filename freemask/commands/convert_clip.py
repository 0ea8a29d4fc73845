"""Convert OpenAI's released CLIP file (a TorchScript .pt archive) into a plain state dict for
MODEL.CLIP_ADAPTER.CLIP_WEIGHTS.
Installed: `freemask convert-clip SRC DST`; in a checkout also `python tools/convert_clip.py SRC DST`, as below.

    python tools/convert_clip.py ViT-B-16.pt clip_vit_b16.pth
    python train_net.py --config-file <FreeSeg config> MODEL.CLIP_ADAPTER.CLIP_WEIGHTS clip_vit_b16.pth

Reading a TorchScript archive can run the code it holds, which is why the project does not read one unless
MODEL.CLIP_ADAPTER.ALLOW_TORCHSCRIPT is on: run this once, on a file you trust (OpenAI's own); the output holds only
tensors and is read with torch.load(weights_only=True). SRC is only read; DST is written atomically. OpenAI's scalar
entries (input_resolution, context_length, vocab_size) are kept: they tell the loader the weights are OpenAI's, which
need the QuickGELU architecture (ViT-B-16-quickgelu).
"""

import argparse
from collections.abc import Sequence

from freemask import cli


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", metavar="SRC", help="OpenAI's CLIP file (TorchScript .pt)")
    parser.add_argument("destination", metavar="DST", help="plain state dict to write (.pth)")
    args = parser.parse_args(argv)
    return cli.run(convert, args.source, args.destination)


def convert(source: str, destination: str) -> None:
    from freemask.modeling.clip import convert_torchscript  # torch: not needed for --help

    count = convert_torchscript(source, destination)
    print(f"wrote {destination} ({count} tensors); set MODEL.CLIP_ADAPTER.CLIP_WEIGHTS {destination}")
