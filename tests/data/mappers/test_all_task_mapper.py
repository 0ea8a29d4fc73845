"""FreeSeg's all-task mapper: one augmentation, then the semantic map and the segments with thing flags; records
without segments (synthetic pairs) yield the semantic map alone."""

import cv2
import numpy as np
import pytest
import torch

from freemask.data.errors import DatasetError
from freemask.data.mappers.all_task import AllTaskDatasetMapper
from freemask.data.mappers.semantic import SemSegDatasetMapper
from freemask.data.panoptic_png import id2rgb

SQUARE = (slice(8, 24), slice(16, 48))


def write_png(path, array):
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    cv2.imwrite(str(path), array)
    return str(path)


def all_task_record(tmp_path, with_sem=True):
    """64 x 128: stuff class 0 everywhere (segment 1), a thing of class 2 (segment 5) in SQUARE, a crowd thing of
    class 1 (segment 9) in the bottom-right corner; the semantic map says the same with the crowd as class 1."""
    image = np.zeros((64, 128, 3), np.uint8)
    image[:] = (0, 0, 255)
    ids = np.ones((64, 128), np.int32)
    image[SQUARE], ids[SQUARE] = (255, 0, 0), 5
    ids[-8:, -8:] = 9
    sem = np.zeros((64, 128), np.uint8)
    sem[SQUARE] = 2
    sem[-8:, -8:] = 1
    record = {
        "file_name": write_png(tmp_path / "image.png", image),
        "image_id": 3,
        "pan_seg_file_name": write_png(tmp_path / "pan.png", id2rgb(ids)),
        "segments_info": [
            {"id": 1, "category_id": 0, "iscrowd": 0, "isthing": False},
            {"id": 5, "category_id": 2, "iscrowd": 0, "isthing": True},
            {"id": 9, "category_id": 1, "iscrowd": 1, "isthing": True},
        ],
    }
    if with_sem:
        record["sem_seg_file_name"] = write_png(tmp_path / "sem.png", sem)
    return record, sem


def mapper(num_classes=3):
    semantic = SemSegDatasetMapper(
        True, (64,), crop_size=None, color_aug=False, flip=False, num_classes=num_classes, max_size_train=512
    )
    return AllTaskDatasetMapper(True, "semantic", semantic=semantic)


@pytest.mark.parametrize("with_sem", [True, False])
def test_one_record_gives_semantic_map_and_segments_with_thing_flags(tmp_path, with_sem):
    record, sem = all_task_record(tmp_path, with_sem)
    out = mapper()(record, np.random.default_rng(0))
    assert out["image"].shape == (3, 64, 128) and out["sem_seg"].dtype == torch.int64
    # Without a semantic map it is painted from the segments, the crowd one included.
    assert torch.equal(out["sem_seg"], torch.from_numpy(sem.astype(np.int64)))
    inst = out["instances"]
    assert inst["gt_classes"].tolist() == [0, 2], "crowd segments are never targets"
    assert inst["gt_is_thing"].tolist() == [False, True]
    assert inst["gt_masks"][1][SQUARE].all() and inst["gt_masks"][1].sum() == 16 * 32
    assert (out["height"], out["width"], out["image_id"]) == (64, 128, 3)


def test_flip_moves_the_semantic_map_and_the_masks_together(tmp_path):
    record, _ = all_task_record(tmp_path)
    flipping = AllTaskDatasetMapper(True, "semantic", semantic=SemSegDatasetMapper(True, (64,), crop_size=None))
    for seed in range(6):
        out = flipping(record, np.random.default_rng(seed))
        thing = out["instances"]["gt_masks"][1]
        assert torch.equal(thing, out["sem_seg"] == 2)


def test_a_synthetic_record_yields_the_semantic_map_alone(tmp_path):
    _, sem = all_task_record(tmp_path)
    image = np.full((64, 128, 3), 90, np.uint8)
    record = {
        "file_name": write_png(tmp_path / "syn.png", image),
        "sem_seg_file_name": write_png(tmp_path / "s.png", sem),
    }
    out = mapper()(record, np.random.default_rng(0))
    assert "instances" not in out
    assert torch.equal(out["sem_seg"], torch.from_numpy(sem.astype(np.int64)))


def test_bad_records_name_the_file_and_the_fix(tmp_path):
    record, _ = all_task_record(tmp_path)
    with pytest.raises(DatasetError, match="sem.png.*NUM_CLASSES 2"):
        mapper(num_classes=2)(record, np.random.default_rng(0))
    no_flag = dict(
        record, segments_info=[{k: v for k, v in s.items() if k != "isthing"} for s in record["segments_info"]]
    )
    with pytest.raises(DatasetError, match="pan.png.*isthing"):
        mapper()(no_flag, np.random.default_rng(0))
    bare = {"file_name": record["file_name"]}
    with pytest.raises(DatasetError, match="no semantic map.*no segments"):
        mapper()(bare, np.random.default_rng(0))
