"""DatasetEvaluators: one inference pass feeding semantic and panoptic evaluators."""

import cv2
import pytest
import torch
import torch.nn.functional as F

from freemask.data.panoptic_png import id2rgb
from freemask.evaluation import COCOPanopticEvaluator, DatasetEvaluators, SemSegEvaluator


def test_results_of_every_evaluator_by_task(tmp_path):
    gt_ids = torch.tensor([[5, 5, 9, 9]])
    png = tmp_path / "pan.png"
    cv2.imwrite(str(png), id2rgb(gt_ids.numpy())[..., ::-1])
    categories = [
        {"id": 1, "contiguous_id": 0, "name": "car", "isthing": True},
        {"id": 2, "contiguous_id": 1, "name": "sky", "isthing": False},
    ]
    evaluators = DatasetEvaluators([SemSegEvaluator(2, 255, ["car", "sky"]), COCOPanopticEvaluator(categories)])
    inp = {
        "file_name": "img.jpg",
        "sem_seg": torch.tensor([[0, 0, 1, 1]]),
        "pan_seg_file_name": str(png),
        "segments_info": [{"id": 5, "category_id": 0}, {"id": 9, "category_id": 1}],
    }
    out = {
        "sem_seg": F.one_hot(torch.tensor([[0, 1, 1, 1]]), 2).permute(2, 0, 1).float(),
        "panoptic_seg": (torch.tensor([[1, 1, 2, 2]]), [{"id": 1, "category_id": 0}, {"id": 2, "category_id": 1}]),
    }
    evaluators.reset()
    evaluators.process([inp], [out])
    results = evaluators.evaluate()
    assert list(results) == ["sem_seg", "panoptic_seg"]
    assert results["sem_seg"]["IoU-car"] == pytest.approx(50.0)  # 1 of 2 car pixels, union 2
    assert results["panoptic_seg"]["PQ"] == 100.0
    with pytest.raises(ValueError, match="'sem_seg'"):
        DatasetEvaluators([SemSegEvaluator(2, 255, ["a", "b"])] * 2).evaluate()
