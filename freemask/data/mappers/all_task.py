"""One record -> the targets of all three tasks after ONE augmentation, for FreeSeg's all-task training.

FreeSeg draws the task per iteration (bytedance/FreeSeg, mask2former/open_vocabulary_model.py,
``OpenVocabulary.forward``), so each sample must be ready for any of them: the semantic map (semantic task: one mask
per class present) and the non-crowd segments with their thing flags (panoptic: all of them; instance: the things).
Its ``coco_full_lsj`` mapper builds large-scale-jitter transforms but trains with the semantic recipe (shortest
edge, crop with the category-area check, colour, flip: bytedance/FreeSeg,
mask2former/data/dataset_mappers/coco_full_task_new_baseline_dataset_mapper.py,
``COCOFullTaskNewBaselineDatasetMapper.from_config``), which is this mapper's default recipe too.

A record without segments (a FreeMask synthetic pair, a semantic-only split) yields the semantic map alone, so real
and synthetic records mix in one batch (the model trains such samples with the semantic task). A record with segments
but no semantic map gets one painted from its segments (crowd included, the rest ignore), as Mask2Former's COCO
semantic maps are made from the panoptic annotations.
"""

from typing import Dict, List, Optional

import numpy as np
import torch

from ...config import CfgNode
from ..errors import DatasetError
from . import transforms as T
from .instance import InstanceDatasetMapper, category_map
from .semantic import check_label_range, read_image


class AllTaskDatasetMapper(InstanceDatasetMapper):
    """Training output: ``{"file_name", "image_id"?, "height", "width" (original size), "image": uint8 (3, H, W),
    "sem_seg": int64 (H, W), "padding_mask": bool (H, W), "instances"?: {"gt_masks": bool (T, H, W), "gt_classes":
    int64 (T,), "gt_is_thing": bool (T,)}}``; ``instances`` only for records with segments (panoptic
    ``segments_info`` or instance ``annotations``; an instance annotation is a thing). Test output: as
    :class:`InstanceDatasetMapper`'s.

    With ``num_classes`` set on the semantic settings (MODEL.SEM_SEG_HEAD.NUM_CLASSES), a label or segment class
    outside the training vocabulary is a DatasetError naming the file.
    """

    @classmethod
    def from_config(cls, cfg: CfgNode, is_train: bool = True, recipe: str = "semantic") -> "AllTaskDatasetMapper":
        """As :meth:`InstanceDatasetMapper.from_config`, FreeSeg's semantic recipe by default."""
        return super().from_config(cfg, is_train, recipe)

    def __call__(self, record: Dict, rng: Optional[np.random.Generator] = None) -> Dict:
        if not self.is_train:
            return super().__call__(record, rng)
        if rng is None:
            raise ValueError("the training mapper needs an rng (numpy Generator) so samples are reproducible")
        image = read_image(record["file_name"])
        shape = image.shape[:2]
        out = {"file_name": record["file_name"], "height": shape[0], "width": shape[1]}
        if "image_id" in record:
            out["image_id"] = record["image_id"]
        sem = self._read_sem_seg(record, shape)
        if sem is not None:
            self._check_labels(record, sem)
        has_segments = "pan_seg_file_name" in record or "annotations" in record
        ids = seg_ids = masks = None
        classes: List[int] = []
        if has_segments:
            ids, seg_ids, masks, classes = self._read_targets(record, shape)
            if sem is None:
                segments = record.get("segments_info", ())
                sem = category_map(shape, ids, segments, masks, classes, self.semantic.ignore_label)
                self._check_labels(record, sem)  # crowd segments, not targets, are painted too
        if sem is None:
            raise DatasetError(
                f"{record['file_name']}: the record has no semantic map ('sem_seg_file_name') and no segments; the "
                f"all-task mapper needs one of them (register the split with its semantic or panoptic annotations)"
            )
        geometry, image_pad = self._draw(shape, lambda: sem, rng)
        image = geometry.apply(image, True, image_pad, self.semantic.resize_backend)
        if self.recipe == "semantic" and self.semantic.color_aug:
            image = T.photometric_distortion(image, rng)
        out["image"] = self.semantic._to_chw(image)
        out["sem_seg"] = torch.from_numpy(geometry.apply(sem, False, self.semantic.ignore_label).astype(np.int64))
        out["padding_mask"] = torch.from_numpy(geometry.padding_mask())
        if has_segments:
            gt_masks = self._transform_targets(geometry, ids, seg_ids, masks, image.shape[:2])
            keep = torch.from_numpy(gt_masks.reshape(len(gt_masks), -1).any(1))
            out["instances"] = {
                "gt_masks": torch.from_numpy(gt_masks)[keep],
                "gt_classes": torch.tensor(classes, dtype=torch.int64).reshape(-1)[keep],
                "gt_is_thing": torch.tensor(_thing_flags(record), dtype=torch.bool).reshape(-1)[keep],
            }
        return out

    def _check_labels(self, record: Dict, sem: np.ndarray) -> None:
        num_classes = self.semantic.num_classes
        if num_classes is None:
            return
        path = record.get("sem_seg_file_name") or record.get("pan_seg_file_name") or record["file_name"]
        check_label_range(sem, num_classes, self.semantic.ignore_label, path, bool(record.get("reduce_zero_label")))


def _thing_flags(record: Dict) -> List[bool]:
    """Per non-crowd segment (the order of ``_read_targets``), whether it is a thing; every instance annotation is."""
    if "pan_seg_file_name" not in record:
        return [True for a in record["annotations"] if not a.get("iscrowd", 0)]
    segments = [s for s in record["segments_info"] if not s.get("iscrowd", 0)]
    missing = [s["id"] for s in segments if "isthing" not in s]
    if missing:
        raise DatasetError(
            f"{record['pan_seg_file_name']}: segments {missing[:3]} have no 'isthing' flag, which the instance task "
            f"needs; register the split with the panoptic loaders (they add it from the categories)"
        )
    return [bool(s["isthing"]) for s in segments]
