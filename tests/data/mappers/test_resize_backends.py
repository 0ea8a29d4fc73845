"""Each model family resizes images as its official code does (INPUT.RESIZE_BACKEND, issue 25 point 5).

detectron2 (Mask2Former panoptic / instance, FreeSeg) resizes a uint8 image with Pillow's BILINEAR filter and rounds
the ResizeShortestEdge size in two steps; mmcv (the MMSegmentation families) resizes with OpenCV's INTER_LINEAR and
one scale factor. Pillow's filter spans the whole footprint of an output pixel when it shrinks an image, OpenCV's
samples 2x2 pixels, so a downscaled test image is a visibly different input for the model. Label maps take the
nearest pixel centre under both (detectron2 resizes segmentation with Pillow's NEAREST).
"""

import pathlib

import cv2
import numpy as np
import pytest
from PIL import Image

from freemask.commands import demo as demo_command
from freemask.config import ConfigError, get_cfg
from freemask.data.mappers import transforms as T
from freemask.data.mappers.binary import mask_box, random_resized_box
from freemask.data.mappers.build import build_mapper
from freemask.data.mappers.semantic import SemSegDatasetMapper

ROOT = pathlib.Path(__file__).resolve().parents[3]

DETECTRON2_FAMILY = [
    "configs/coco/panoptic-segmentation/maskformer2_R50_bs16_50ep.yaml",
    "configs/coco/instance-segmentation/maskformer2_R50_bs16_50ep.yaml",
    "configs/ade20k/panoptic-segmentation/maskformer2_R50_bs16_160k.yaml",
    "configs/ade20k/instance-segmentation/maskformer2_R50_bs16_160k.yaml",
    "configs/coco-stuff-164k/open-vocabulary/freeseg/freeseg_R50_alltask_bs32_60k.yaml",
    "configs/pascal-voc/open-vocabulary/freeseg/freeseg_R50_bs16_20k.yaml",
]
MMSEG_FAMILY = [
    "configs/ade20k/semantic-segmentation/mask2former/maskformer2_R50_bs16_160k.yaml",
    "configs/ade20k/semantic-segmentation/segformer/segformer_mit_b2_bs16_160k.yaml",
    "configs/ade20k/semantic-segmentation/segmenter/segmenter_vit_base_mask_bs8_160k.yaml",
    "configs/ade20k/semantic-segmentation/semask/semask_fpn_swin_tiny_bs16_80k.yaml",
    "configs/coco-stuff-164k/semantic-segmentation/mask2former/maskformer2_R50_bs16_80k.yaml",
    "configs/ade20k/semantic-segmentation/Base-ADE20K-150.yaml",  # Semantic FPN
]


def textured_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """uint8 (H, W, 3): two fine gratings and pixel noise, the kind of detail where the two filters disagree."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    pattern = 128 + 60 * np.sin(x / 3.1 + y / 7.3) + 40 * np.sin(np.hypot(x - width / 2, y - height / 3) / 2.3)
    noise = np.random.default_rng(seed).normal(0, 12, (height, width, 3))
    return np.clip(pattern[..., None] + noise, 0, 255).astype(np.uint8)


def pillow_bilinear(image: np.ndarray, size) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.BILINEAR))


def opencv_linear(image: np.ndarray, size) -> np.ndarray:
    return cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


def detectron2_output_shape(height: int, width: int, short: int, max_size: int):
    """detectron2 ResizeShortestEdge.get_output_shape, step by step: short side first, then the cap on the long."""
    scale = short / min(height, width)
    new_h, new_w = (short, scale * width) if height < width else (scale * height, short)
    if max(new_h, new_w) > max_size:
        cap = max_size / max(new_h, new_w)
        new_h, new_w = new_h * cap, new_w * cap
    return int(new_h + 0.5), int(new_w + 0.5)


def mmcv_output_shape(height: int, width: int, short: int, max_size: int):
    """mmcv rescale_size with scale (max_size, short): one factor, each side rounded half up."""
    factor = min(max_size / max(height, width), short / min(height, width))
    return int(height * factor + 0.5), int(width * factor + 0.5)


# ----------------------------------------------------------------------------------------------- the resize itself
@pytest.mark.parametrize("size", [(75, 101), (130, 170), (31, 45), (64, 64), (200, 90)])
def test_pil_resize_is_pillows_bilinear_byte_for_byte(size):
    image = textured_image(100, 140)  # upscaled to 130x170 and 200 rows; downscaled to 75x101, 31x45, 64x64
    resized = T.resize_image(image, size, "pil")
    assert resized.shape == (*size, 3) and resized.dtype == np.uint8
    np.testing.assert_array_equal(resized, pillow_bilinear(image, size))
    resized[0, 0] = 0  # a writable array, as the cv2 backend gives (later steps may work in place)


def test_cv2_resize_is_opencv_linear_byte_for_byte():
    image = textured_image(100, 140)
    for size in [(75, 101), (130, 170)]:
        np.testing.assert_array_equal(T.resize_image(image, size, "cv2"), opencv_linear(image, size))
        np.testing.assert_array_equal(T.resize_image(image, size), opencv_linear(image, size))  # the default


def test_downscaled_the_two_filters_give_the_model_different_images():
    """Why the backend matters: a 480x640 image at ADE20K's 320-short test size (x2/3) differs on 88% of its values,
    by 2.9 grey levels on average and up to 27 (measured: Pillow 13.0, OpenCV 5.1); a natural photograph shrunk as
    much differs by 1.5 on average, up to 57. Upscaled (to 600x800) only the rounding differs: by one level at most,
    on 29% of the values."""
    image = textured_image(480, 640)
    down = (320, 427)
    diff = np.abs(T.resize_image(image, down, "pil").astype(int) - T.resize_image(image, down, "cv2").astype(int))
    assert diff.mean() > 2.0 and diff.max() >= 20 and (diff > 0).mean() > 0.8
    up = (600, 800)
    diff = np.abs(T.resize_image(image, up, "pil").astype(int) - T.resize_image(image, up, "cv2").astype(int))
    assert diff.max() == 1 and 0.1 < (diff > 0).mean() < 0.4


def test_shortest_edge_size_follows_each_familys_rounding():
    # 11x22 to shortest edge 800 is 400x1600, capped at 1333: the short side is 666.5 in exact arithmetic, which
    # detectron2's two steps round to 666 and mmcv's one factor to 667
    assert T.shortest_edge_size(11, 22, 800, 1333, "pil") == (666, 1333)
    assert T.shortest_edge_size(11, 22, 800, 1333, "cv2") == (667, 1333)
    differs = 0
    for short, max_size in [(800, 1333), (640, 2560), (512, 2048)]:
        for height in range(1, 400, 3):
            for width in range(1, 700, 7):
                pil = T.shortest_edge_size(height, width, short, max_size, "pil")
                assert pil == detectron2_output_shape(height, width, short, max_size), (height, width)
                cv = T.shortest_edge_size(height, width, short, max_size, "cv2")
                assert cv == mmcv_output_shape(height, width, short, max_size), (height, width)
                differs += pil != cv
    assert differs > 0  # the two roundings are not the same function


def test_an_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="resize backend"):
        T.resize_image(np.zeros((4, 4, 3), np.uint8), (2, 2), "bilinear")
    with pytest.raises(ConfigError, match="INPUT.RESIZE_BACKEND"):
        SemSegDatasetMapper(False, resize_backend="PIL")


# ---------------------------------------------------------------------------------- the shipped configs' mappers
def load(path: str, *opts: str):
    cfg = get_cfg()
    cfg.merge_from_file(str(ROOT / path))
    cfg.merge_from_list(list(opts))
    return cfg


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A 900x1200 image (downscaled by every shipped test size) and its all-zero label map, on disk."""
    folder = tmp_path_factory.mktemp("resize")
    image = textured_image(900, 1200, seed=1)
    cv2.imwrite(str(folder / "image.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    mask = (np.arange(900)[:, None] // 7 + np.arange(1200)[None] // 11).astype(np.uint8) % 5  # thin stripes
    cv2.imwrite(str(folder / "mask.png"), mask)
    return {"image": image, "mask": mask, "file_name": str(folder / "image.png"), "sem": str(folder / "mask.png")}


def official_test_input(path: str, cfg, image: np.ndarray) -> np.ndarray:
    """The image as the official code of the config's family resizes it for testing."""
    short, max_size = cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST
    if path in DETECTRON2_FAMILY:
        return pillow_bilinear(image, detectron2_output_shape(*image.shape[:2], short, max_size))
    return opencv_linear(image, mmcv_output_shape(*image.shape[:2], short, max_size))


def test_every_detectron2_family_config_resizes_with_pil_and_every_mmseg_one_with_cv2():
    for path in DETECTRON2_FAMILY:
        assert load(path).INPUT.RESIZE_BACKEND == "pil", path
    for path in MMSEG_FAMILY:
        assert load(path).INPUT.RESIZE_BACKEND == "cv2", path


@pytest.mark.parametrize("path", DETECTRON2_FAMILY + MMSEG_FAMILY)
def test_test_mapper_gives_the_official_codes_pixels(path, files):
    cfg = load(path)
    mapper = build_mapper(cfg, is_train=False)
    out = mapper({"file_name": files["file_name"], "sem_seg_file_name": files["sem"], "image_id": 0})
    image = out["image"].numpy().transpose(1, 2, 0)
    if cfg.INPUT.FORMAT == "BGR":
        image = image[:, :, ::-1]
    np.testing.assert_array_equal(image, official_test_input(path, cfg, files["image"]))
    assert (out["height"], out["width"]) == (900, 1200)


@pytest.mark.parametrize("path", [DETECTRON2_FAMILY[2], DETECTRON2_FAMILY[4], MMSEG_FAMILY[0]])
def test_training_mapper_resizes_the_image_as_the_family_and_labels_nearest(path, files):
    """The training resize (crop, flip and colour off so the resize is the whole augmentation): the image through the
    family's filter, the labels by the nearest pixel centre, which is detectron2's Pillow NEAREST too."""
    opts = ["INPUT.MIN_SIZE_TRAIN", "[611]", "INPUT.MIN_SIZE_TRAIN_SAMPLING", "choice", "INPUT.MAX_SIZE_TRAIN", "4000"]
    opts += ["INPUT.CROP.ENABLED", "False", "INPUT.RANDOM_FLIP", "none", "INPUT.COLOR_AUG_SSD", "False"]
    cfg = load(path, *opts, "MODEL.SEM_SEG_HEAD.NUM_CLASSES", "5")
    record = {"file_name": files["file_name"], "sem_seg_file_name": files["sem"]}
    out = build_mapper(cfg, is_train=True)(record, np.random.default_rng(0))
    image = out["image"].numpy().transpose(1, 2, 0)
    if cfg.INPUT.FORMAT == "BGR":
        image = image[:, :, ::-1]
    if cfg.INPUT.RESIZE_BACKEND == "pil":
        size = detectron2_output_shape(900, 1200, 611, 4000)
        np.testing.assert_array_equal(image, pillow_bilinear(files["image"], size))
    else:
        size = mmcv_output_shape(900, 1200, 611, 4000)
        np.testing.assert_array_equal(image, opencv_linear(files["image"], size))
    nearest = np.asarray(Image.fromarray(files["mask"]).resize((size[1], size[0]), Image.NEAREST))
    np.testing.assert_array_equal(out["sem_seg"].numpy(), nearest)


def test_freeseg_stage1_crops_are_resized_with_pil(files):
    """FreeSeg's stage-1 training crops go through detectron2's ResizeTransform: Pillow's bilinear. (At test time
    FreeSeg takes the centre window at the crop's own resolution: nothing is resized.)"""
    cfg = load("configs/pascal-voc/open-vocabulary/freeseg/freeseg_learn_prompt_bs32_3200.yaml", "INPUT.RANDOM_FLIP",
               "none")
    record = {"file_name": files["file_name"], "sem_seg_file_name": files["sem"], "category_id": 3}
    out = build_mapper(cfg, is_train=True)(record, np.random.default_rng(5))
    box = mask_box(files["mask"] == 3, cfg.MODEL.CLIP_ADAPTER.MASK_EXPAND_RATIO)
    crop = T.crop(files["image"], box)
    window = random_resized_box(T.crop(files["mask"] == 3, box), np.random.default_rng(5))  # the mapper's draw
    size = (cfg.INPUT.MIN_SIZE_TRAIN[1], cfg.INPUT.MIN_SIZE_TRAIN[0])  # FreeSeg's 244 x 224
    expected = pillow_bilinear(np.ascontiguousarray(T.crop(crop, window)), size)
    np.testing.assert_array_equal(out["image"].numpy().transpose(1, 2, 0), expected)


def test_coco_large_scale_jitter_resizes_with_pil(files):
    """COCO's LSJ (detectron2's ResizeScale, a ResizeTransform too): the drawn size through Pillow's bilinear, then
    the crop and the 128 padding."""
    cfg = load(DETECTRON2_FAMILY[0], "INPUT.RANDOM_FLIP", "none", "INPUT.MIN_SCALE", "0.3", "INPUT.MAX_SCALE", "0.6")
    mapper = build_mapper(cfg, is_train=True)
    out = mapper({"file_name": files["file_name"], "sem_seg_file_name": files["sem"]}, np.random.default_rng(0))
    geometry = mapper.lsj.draw(900, 1200, np.random.default_rng(0))  # the draw the mapper made from that seed
    assert geometry.size[0] < 900  # a downscale
    expected = T.crop(pillow_bilinear(files["image"], geometry.size), geometry.box)
    expected = T.pad_bottom_right(expected, (cfg.INPUT.IMAGE_SIZE,) * 2, 128)
    np.testing.assert_array_equal(out["image"].numpy().transpose(1, 2, 0), expected)


@pytest.mark.parametrize("path", [DETECTRON2_FAMILY[0], MMSEG_FAMILY[0]])
def test_demo_input_is_resized_as_the_family(path, files):
    """tools/demo.py resizes an image as the config's family does, as the test mapper."""
    cfg = load(path)
    chw = demo_command.model_input(files["image"], SemSegDatasetMapper.from_config(cfg, is_train=False))["image"]
    np.testing.assert_array_equal(chw.numpy().transpose(1, 2, 0), official_test_input(path, cfg, files["image"]))
