"""What each shipped config gives its model at test time: the exact (padded) input sizes and sliding-window boxes the
official code uses, for a 512x683 and a 256x320 image (issue 18, points 1 and 5).

The evaluation pipeline first resizes the image in the test mapper (INPUT.MIN_SIZE_TEST / MAX_SIZE_TEST: shortest
edge 512, longest at most 2048, as MMSegmentation's Resize of scale (2048, 512) with keep_ratio and detectron2's
ResizeShortestEdge), then the inference helper pads or cuts it. The official layouts:

* Mask2Former (detectron2 / MMSegmentation Mask2Former): whole image, padded bottom/right to a multiple of 32 (the
  model's size divisibility, not the 512 or 640 training crop): 512x683 -> 512x704; 256x320 -> resized 512x640,
  already a multiple. The 640 recipes test at shortest edge 640: 640x854 -> 640x864 and 640x800.
* SegFormer (MMSegmentation test_cfg mode 'whole', no Pad in the test pipeline): the resized image as it is.
* Segmenter (MMSegmentation test_cfg mode 'slide', crop 512, stride 480, no padding): 512x683 -> windows x = 0..512
  and 171..683; 512x640 -> x = 0..512 and 128..640. An image smaller than the crop (a 256x320 input, as a multi-scale
  ratio below 1 gives) is one window of its own size.

The model is not built: a fake ``predict`` records what it is given. Each input pixel carries its own (row, column)
+ 1, so a window's box is read from its content and padding (0 after normalisation) from where the content ends.
"""

import glob
import pathlib
from typing import List, Tuple

import numpy as np
import pytest
import torch

from freemask.data.mappers import transforms as T
from freemask.modeling.inference import SegmentationInference

FAMILIES = {"mask2former": "maskformer2", "segformer": "segformer", "segmenter": "segmenter"}
DATASETS = ("ade20k/semantic-segmentation", "coco-stuff-164k/semantic-segmentation")
ROOT = pathlib.Path(__file__).resolve().parents[2]  # parametrisation runs before the repo_root fixture exists

Call = Tuple[Tuple[int, ...], List[Tuple[int, int, int, int]]]  # (input shape, content box of each batch item)


def shipped_configs(family: str) -> List[str]:
    paths = []
    for dataset in DATASETS:
        paths += sorted(glob.glob(str(ROOT / "configs" / dataset / family / f"{FAMILIES[family]}_*.yaml")))
    return [str(pathlib.Path(p).relative_to(ROOT)) for p in paths]


def test_every_family_ships_configs_for_both_datasets():
    for family in FAMILIES:
        assert {"/".join(p.split("/")[1:3]) for p in shipped_configs(family)} == set(DATASETS), family


def layout(cfg, original: Tuple[int, int], resize: bool = True) -> Tuple[Tuple[int, int], List[Call]]:
    """(size after the test resize, the calls of predict) for an ``original`` (h, w) image under ``cfg``."""
    height, width = original
    if resize:
        resized = T.resize_for_test(
            np.zeros((height, width, 3), np.uint8), cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST
        )
        height, width = resized.shape[:2]
    rows = torch.arange(1, height + 1, dtype=torch.float32).view(1, 1, height, 1).expand(1, 1, height, width)
    cols = torch.arange(1, width + 1, dtype=torch.float32).view(1, 1, 1, width).expand(1, 1, height, width)
    image = torch.cat([rows, cols, torch.ones(1, 1, height, width)], dim=1)
    calls: List[Call] = []

    def predict(x: torch.Tensor) -> torch.Tensor:
        boxes = []
        for item in x:
            inside = item[2] > 0  # the image's pixels; padding is 0
            y1, x1 = int(item[0][inside].min()) - 1, int(item[1][inside].min()) - 1
            boxes.append((y1, x1, y1 + int(inside.any(1).sum()), x1 + int(inside.any(0).sum())))
        calls.append((tuple(x.shape), boxes))
        return torch.zeros(x.shape[0], 2, *x.shape[-2:])

    SegmentationInference.from_config(cfg)(predict, image, original)
    return (height, width), calls


def whole(size, padded):
    return [((1, 3, *padded), [(0, 0, *size)])]


@pytest.mark.parametrize("path", shipped_configs("mask2former"))
def test_mask2former_pads_test_images_to_32(path, load_config):
    cfg = load_config(str(ROOT / path))
    if cfg.INPUT.MIN_SIZE_TEST == 640:  # the 640 recipes (Swin-B)
        assert layout(cfg, (512, 683)) == ((640, 854), whole((640, 854), (640, 864)))
        assert layout(cfg, (256, 320)) == ((640, 800), whole((640, 800), (640, 800)))
    else:
        assert layout(cfg, (512, 683)) == ((512, 683), whole((512, 683), (512, 704)))
        assert layout(cfg, (256, 320)) == ((512, 640), whole((512, 640), (512, 640)))
    assert cfg.INPUT.SIZE_DIVISIBILITY in (512, 640)  # the training crop's pad, unused at test time


@pytest.mark.parametrize("path", shipped_configs("segformer"))
def test_segformer_tests_the_whole_image_unpadded(path, load_config):
    cfg = load_config(str(ROOT / path))
    assert layout(cfg, (512, 683)) == ((512, 683), whole((512, 683), (512, 683)))
    assert layout(cfg, (256, 320)) == ((512, 640), whole((512, 640), (512, 640)))


@pytest.mark.parametrize("path", shipped_configs("segmenter"))
def test_segmenter_slides_unpadded_windows_cut_at_the_border(path, load_config):
    cfg = load_config(str(ROOT / path))
    assert layout(cfg, (512, 683)) == ((512, 683), [((2, 3, 512, 512), [(0, 0, 512, 512), (0, 171, 512, 683)])])
    assert layout(cfg, (256, 320)) == ((512, 640), [((2, 3, 512, 512), [(0, 0, 512, 512), (0, 128, 512, 640)])])
    # Given to the helper directly (as after a multi-scale ratio below 1): one window of the image's own size.
    assert layout(cfg, (256, 320), resize=False) == ((256, 320), [((1, 3, 256, 320), [(0, 0, 256, 320)])])
    assert layout(cfg, (256, 683), resize=False)[1] == [((2, 3, 256, 512), [(0, 0, 256, 512), (0, 171, 256, 683)])]
