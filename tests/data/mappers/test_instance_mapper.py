"""The instance / panoptic mapper: masks follow the image through LSJ and the ADE recipe; crowd and empty dropped."""

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from torch.utils.data import DataLoader

from freemask.config import ConfigError, get_cfg
from freemask.data.errors import DatasetError
from freemask.data.loading.build import MapDataset, trivial_batch_collator
from freemask.data.mappers.instance import InstanceDatasetMapper, LargeScaleJitter
from freemask.data.mappers.semantic import SemSegDatasetMapper
from freemask.data.panoptic_png import id2rgb, rgb2id

RED, BLUE, GREEN = (255, 0, 0), (0, 0, 255), (0, 255, 0)
SQUARE = (slice(8, 24), slice(16, 48))  # the thing, rows 8..23, columns 16..47


def write_png(path, rgb):
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return str(path)


def panoptic_record(tmp_path, height=64, width=128, crowd=False):
    """Blue stuff background (segment 1, class 0), a red thing square (segment 5, class 2), optionally a green crowd
    thing (segment 9, class 3) at the bottom right."""
    image = np.empty((height, width, 3), np.uint8)
    image[:] = BLUE
    ids = np.ones((height, width), np.int32)
    image[SQUARE], ids[SQUARE] = RED, 5
    segments = [
        {"id": 1, "category_id": 0, "iscrowd": 0, "isthing": False},
        {"id": 5, "category_id": 2, "iscrowd": 0, "isthing": True},
    ]
    if crowd:
        image[-8:, -8:], ids[-8:, -8:] = GREEN, 9
        segments.append({"id": 9, "category_id": 3, "iscrowd": 1, "isthing": True})
    return {
        "file_name": write_png(tmp_path / "image.png", image),
        "image_id": "image",
        "height": height,
        "width": width,
        "pan_seg_file_name": write_png(tmp_path / "pan.png", id2rgb(ids)),
        "segments_info": segments,
    }


def lsj(scale, image_size=64, flip=True):
    return InstanceDatasetMapper(True, "lsj", LargeScaleJitter(image_size, scale, scale, flip))


def colour_mask(image_chw, colour):
    return (image_chw.permute(1, 2, 0) == torch.tensor(colour, dtype=torch.uint8)).all(-1)


def test_rgb2id_inverts_id2rgb():
    ids = np.array([[0, 1, 255], [256, 65536 + 7, 256**3 - 1]])
    assert np.array_equal(rgb2id(id2rgb(ids)), ids) and rgb2id(id2rgb(ids)).dtype == np.int32


def test_lsj_resize_and_flip_move_the_square_with_its_mask_and_pad_with_zero(tmp_path):
    record = panoptic_record(tmp_path)  # 64 x 128, S = 64, scale 1: resized to 32 x 64, padded below
    mapper = lsj(1.0)
    expected = torch.zeros(64, 64, dtype=torch.bool)
    expected[4:12, 8:24] = True
    flips = set()
    for seed in range(8):
        out = mapper(record, np.random.default_rng(seed))
        inst = out["instances"]
        assert out["image"].shape == (3, 64, 64) and out["image"].dtype == torch.uint8
        assert inst["gt_masks"].dtype == torch.bool and inst["gt_classes"].dtype == torch.int64
        assert inst["gt_classes"].tolist() == [0, 2]
        square = inst["gt_masks"][1]
        flipped = bool(square[4:12, 40:56].all())
        flips.add(flipped)
        assert torch.equal(square, expected.flip(-1) if flipped else expected)
        assert torch.equal(square, colour_mask(out["image"], RED))
        assert torch.equal(inst["gt_masks"][0], colour_mask(out["image"], BLUE))
        assert out["padding_mask"][32:].all() and not out["padding_mask"][:32].any()
        assert (out["image"][:, 32:] == 128).all() and not inst["gt_masks"][:, 32:].any()
        assert (out["height"], out["width"], out["image_id"]) == (64, 128, "image")
    assert flips == {False, True}


def test_lsj_crop_keeps_masks_on_the_image_and_drops_instances_cropped_away(tmp_path):
    record = panoptic_record(tmp_path)  # scale 2: resized 64 x 128 (unchanged), a 64 x 64 window
    mapper = lsj(2.0, flip=False)
    seen_without_square = seen_with_square = False
    for seed in range(16):
        out = mapper(record, np.random.default_rng(seed))
        inst = out["instances"]
        assert out["image"].shape == (3, 64, 64) and not out["padding_mask"].any()
        red = colour_mask(out["image"], RED)
        if red.any():
            seen_with_square = True
            assert inst["gt_classes"].tolist() == [0, 2] and torch.equal(inst["gt_masks"][1], red)
        else:
            seen_without_square = True
            assert inst["gt_classes"].tolist() == [0]
    assert seen_with_square and seen_without_square


def test_lsj_scale_range_is_honoured_and_the_aspect_kept():
    jitter = LargeScaleJitter(image_size=64, min_scale=0.5, max_scale=1.5)
    long_sides = []
    for seed in range(300):
        geometry = jitter.draw(100, 200, np.random.default_rng(seed))
        h, w = geometry.size
        assert 32 <= w <= 96 and abs(h - w / 2) <= 0.5
        y0, x0, y1, x1 = geometry.box
        assert (y1 - y0, x1 - x0) == (min(h, 64), min(w, 64)) and 0 <= x0 <= max(w - 64, 0)
        long_sides.append(w)
    assert min(long_sides) < 34 and max(long_sides) > 94


def test_from_config_reads_the_lsj_keys():
    cfg = get_cfg()
    assert (cfg.INPUT.IMAGE_SIZE, cfg.INPUT.MIN_SCALE, cfg.INPUT.MAX_SCALE) == (1024, 0.1, 2.0)
    cfg.merge_from_list(["INPUT.IMAGE_SIZE", "256", "INPUT.MIN_SCALE", "0.5", "INPUT.RANDOM_FLIP", "none"])
    mapper = InstanceDatasetMapper.from_config(cfg, is_train=True)
    assert mapper.lsj == LargeScaleJitter(256, 0.5, 2.0, flip=False)
    cfg.merge_from_list(["INPUT.MIN_SCALE", "3.0"])
    with pytest.raises(ConfigError, match="INPUT.MIN_SCALE"):
        InstanceDatasetMapper.from_config(cfg)
    with pytest.raises(ConfigError, match="recipe"):
        InstanceDatasetMapper(True, "mosaic")


def test_crowd_segments_are_not_targets(tmp_path):
    out = lsj(1.0, image_size=128)(panoptic_record(tmp_path, crowd=True), np.random.default_rng(0))
    assert out["instances"]["gt_classes"].tolist() == [0, 2]
    assert not out["instances"]["gt_masks"].any(0)[colour_mask(out["image"], GREEN)].any()


def test_instance_annotations_polygons_and_rle_exclude_crowd(tmp_path):
    image = np.zeros((64, 64, 3), np.uint8)
    image[8:24, 16:48] = RED
    image[40:56, 40:56] = BLUE
    blue = np.zeros((64, 64), np.uint8, order="F")
    blue[40:56, 40:56] = 1
    rle = mask_util.encode(np.asfortranarray(blue))
    polygon = [16, 8, 48, 8, 48, 24, 16, 24]  # x, y corners of the red square
    record = {
        "file_name": write_png(tmp_path / "inst.png", image),
        "annotations": [
            {"segmentation": [polygon], "category_id": 4, "iscrowd": 0},
            {"segmentation": rle, "category_id": 1, "iscrowd": 0},
            {"segmentation": [[0, 0, 10, 0, 10, 10]], "category_id": 2, "iscrowd": 1},
        ],
    }
    out = lsj(1.0)(record, np.random.default_rng(3))
    inst = out["instances"]
    assert inst["gt_classes"].tolist() == [4, 1]
    assert torch.equal(inst["gt_masks"][1], colour_mask(out["image"], BLUE))
    # pycocotools fills the polygon (x 16..48, y 8..24) as exactly the 32 x 16 pixels of the square
    assert torch.equal(inst["gt_masks"][0], colour_mask(out["image"], RED))


def test_a_bad_annotation_names_the_image(tmp_path):
    record = {"file_name": write_png(tmp_path / "x.png", np.zeros((8, 8, 3), np.uint8))}
    record["annotations"] = [{"segmentation": "not a mask", "category_id": 0, "iscrowd": 0}]
    with pytest.raises(DatasetError, match="x.png: annotation #0: segmentation must be polygons or an RLE"):
        lsj(1.0)(record, np.random.default_rng(0))
    with pytest.raises(DatasetError, match="neither 'pan_seg_file_name'"):
        lsj(1.0)({"file_name": record["file_name"]}, np.random.default_rng(0))


def test_ade_recipe_crops_flips_and_pads_panoptic_ids_with_zero(tmp_path):
    record = panoptic_record(tmp_path, height=64, width=64)
    semantic = SemSegDatasetMapper(True, min_size_train=[64], crop_size=(48, 80), cat_max_ratio=0.75, color_aug=False)
    mapper = InstanceDatasetMapper(True, "semantic", semantic=semantic)
    for seed in range(6):
        out = mapper(record, np.random.default_rng(seed))
        inst = out["instances"]
        assert out["image"].shape == (3, 48, 80)
        assert out["padding_mask"][:, 64:].all() and not out["padding_mask"][:, :64].any()
        assert (out["image"][:, :, 64:] == 0).all() and not inst["gt_masks"][:, :, 64:].any()
        for mask, colour in zip(inst["gt_masks"], [BLUE, RED]):
            assert torch.equal(mask, colour_mask(out["image"], colour))


def test_same_seed_same_sample_and_the_list_collator_carries_variable_targets(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    records = [panoptic_record(tmp_path / "a"), panoptic_record(tmp_path / "b", crowd=True)]
    records[1]["segments_info"][1]["iscrowd"] = 1  # b: background only
    mapper = lsj(1.5)
    first, again = mapper(records[0], np.random.default_rng(7)), mapper(records[0], np.random.default_rng(7))
    assert torch.equal(first["image"], again["image"])
    assert torch.equal(first["instances"]["gt_masks"], again["instances"]["gt_masks"])
    loader = DataLoader(
        MapDataset(records, mapper), batch_sampler=[[(0, 1), (1, 2)]], collate_fn=trivial_batch_collator
    )
    (batch,) = list(loader)
    assert [len(x["instances"]["gt_classes"]) for x in batch] == [2, 1]


def test_test_mode_resizes_the_image_and_gives_no_targets(tmp_path):
    record = panoptic_record(tmp_path)
    mapper = InstanceDatasetMapper(False, semantic=SemSegDatasetMapper(False, min_size_test=32, max_size_test=1000))
    out = mapper(record)
    assert out["image"].shape == (3, 32, 64) and "instances" not in out and (out["height"], out["width"]) == (64, 128)


def test_a_semantic_only_record_trains_with_its_map_and_no_instances(tmp_path):
    """A FreeMask synthetic pair (image + semantic map, no segments) in a panoptic / instance run
    (DATALOADER.SYN_RATIO): the same augmentation moves image and map together; no ``instances`` come out."""
    record = panoptic_record(tmp_path)
    sem = np.zeros((64, 128), np.uint8)
    sem[SQUARE] = 2
    cv2.imwrite(str(tmp_path / "sem.png"), sem)
    synthetic = {"file_name": record["file_name"], "sem_seg_file_name": str(tmp_path / "sem.png"),
                 "height": 64, "width": 128}  # fmt: skip
    out = lsj(1.0)(synthetic, np.random.default_rng(3))
    assert "instances" not in out and out["sem_seg"].dtype == torch.int64
    assert torch.equal(out["sem_seg"] == 2, colour_mask(out["image"], RED))
    assert (out["sem_seg"][32:] == 255).all()  # LSJ padding is ignore
    with pytest.raises(DatasetError, match="neither 'pan_seg_file_name'"):
        lsj(1.0)({"file_name": record["file_name"], "height": 64, "width": 128}, np.random.default_rng(0))
