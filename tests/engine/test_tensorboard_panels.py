"""Periodic evaluation puts image | ground truth | prediction panels into TensorBoard (issue 18, point 16)."""

import os

import cv2
import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from freemask.config import get_cfg
from freemask.data.catalog import DatasetCatalog, MetadataCatalog
from freemask.data.mappers.semantic import read_mask, reduce_zero_label
from freemask.engine.trainer import Trainer
from freemask.utils.visualizer import MIN_PANEL_SIDE, PANEL_GAP, colorize, upscale_small

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_each_periodic_evaluation_writes_panels_to_tensorboard(toy_datasets, tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", toy_datasets)
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(REPO, "configs", "toy", "semantic-segmentation", "semantic_fpn_R18_toy.yaml"))
    cfg.merge_from_list(
        ["MODEL.DEVICE", "cpu", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "4", "SOLVER.CHECKPOINT_PERIOD", "100",
         "DATALOADER.NUM_WORKERS", "0", "MODEL.SEM_SEG_HEAD.CONVS_DIM", "32", "MODEL.SEM_SEG_HEAD.HEAD_DIM", "32",
         "TEST.EVAL_PERIOD", "2", "TEST.VIS_IMAGES", "2", "LOG_PERIOD", "1", "OUTPUT_DIR", str(tmp_path)]
    )  # fmt: skip
    Trainer(cfg).train()

    events = EventAccumulator(str(tmp_path), size_guidance={"images": 0})
    events.Reload()
    records = DatasetCatalog.get("toy_sem_seg_val")[:2]
    stems = [os.path.splitext(os.path.basename(r["file_name"]))[0] for r in records]
    assert sorted(events.Tags()["images"]) == sorted(f"val_panels/{s}" for s in stems)
    colors = MetadataCatalog.get("toy_sem_seg_val").stuff_colors
    for stem, record in zip(stems, records):
        shown = events.Images(f"val_panels/{stem}")
        assert [e.step for e in shown] == [1, 3]  # the evaluations after iterations 2 and 4
        panel = cv2.imdecode(np.frombuffer(shown[-1].encoded_image_string, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
        truth = colorize(reduce_zero_label(read_mask(record["sem_seg_file_name"]), 255), colors)
        truth = upscale_small(truth)
        side = truth.shape[1]
        assert truth.shape[0] >= MIN_PANEL_SIDE and panel.shape[0] == truth.shape[0]
        assert panel.shape[1] > 3 * side + 2 * PANEL_GAP  # image | ground truth | prediction | legend
        np.testing.assert_array_equal(panel[:, side + PANEL_GAP : 2 * side + PANEL_GAP], truth)
