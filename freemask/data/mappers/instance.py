"""Panoptic / instance records -> Mask2Former inputs with one target mask per object, after ONE shared augmentation.

Two recipes (facebookresearch/Mask2Former, mask2former/data/dataset_mappers/):

- ``"lsj"``, COCO's large-scale jitter (Mask2Former's ``COCO{Instance,Panoptic}NewBaselineDatasetMapper``):
  horizontal flip, then detectron2's ``ResizeScale`` (the ``IMAGE_SIZE`` square box scaled by U(MIN_SCALE,
  MAX_SCALE), the image resized to fit inside it, aspect kept), then ``FixedSizeCrop(IMAGE_SIZE)`` (one uniform draw
  places the window on both axes; smaller sides are padded bottom/right and ``padding_mask`` says where).
- ``"semantic"``, the project's ADE recipe (``SemSegDatasetMapper``: shortest edge, crop with the category-ratio
  check, flip, photometric distortion, pad to the crop), as Mask2Former's ``MaskFormerPanopticDatasetMapper`` /
  ``MaskFormerInstanceDatasetMapper`` apply their semantic-style augmentation.

Panoptic ids and instance masks are padded with 0 (void / no object), the semantic map with the ignore label. Masks
are transformed as bit masks with the nearest-neighbour resize of label maps (polygons and RLEs are rasterised at the
original size first, one code path for both). Crowd segments never become targets; targets left empty by the crop
are dropped. As in the semantic mapper, all training randomness comes from the ``rng`` of the call.
"""

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ...config import CfgNode, ConfigError
from ..errors import DatasetError
from ..object_records import check_annotations, check_object_classes, instance_masks, panoptic_segment_ids
from . import transforms as T
from .semantic import SemSegDatasetMapper, read_image, read_mask, reduce_zero_label

RECIPES = ("lsj", "semantic")


@dataclass(frozen=True)
class Geometry:
    """One draw of the geometric augmentation, applied alike to the image and to every label map.

    Order: optional flip (``flip_first``, LSJ = detectron2's RandomFlip before ResizeScale), resize to ``size``
    (h, w), crop ``box`` of the resized array, optional flip (the ADE recipe flips the crop), pad bottom/right to
    ``pad_to``.
    """

    size: Tuple[int, int]
    box: T.Box
    flip: bool
    flip_first: bool = False
    pad_to: Optional[Tuple[int, int]] = None

    def apply(self, array: np.ndarray, is_image: bool, pad_value: int, resize_backend: str = "cv2") -> np.ndarray:
        """The transformed image (bilinear, ``transforms.resize_image``'s ``resize_backend``) or label map (nearest),
        as a new contiguous array."""
        if self.flip and self.flip_first:
            array = T.hflip(array)
        array = T.resize_image(array, self.size, resize_backend) if is_image else T.resize_mask(array, self.size)
        array = T.crop(array, self.box)
        if self.flip and not self.flip_first:
            array = T.hflip(array)
        if self.pad_to is not None:
            array = T.pad_bottom_right(array, self.pad_to, pad_value)
        return np.ascontiguousarray(array)

    def padding_mask(self) -> np.ndarray:
        """bool (H, W) of the output: True on pixels the padding added (Mask2Former's ``padding_mask``)."""
        crop_h, crop_w = self.box[2] - self.box[0], self.box[3] - self.box[1]
        out_h, out_w = (max(crop_h, self.pad_to[0]), max(crop_w, self.pad_to[1])) if self.pad_to else (crop_h, crop_w)
        mask = np.ones((out_h, out_w), dtype=bool)
        mask[:crop_h, :crop_w] = False
        return mask


@dataclass(frozen=True)
class LargeScaleJitter:
    """COCO's LSJ settings (``INPUT.IMAGE_SIZE``, ``INPUT.MIN_SCALE``, ``INPUT.MAX_SCALE``, ``INPUT.RANDOM_FLIP``).

    ``pad_value`` is the image padding: 128, detectron2 ``FixedSizeCrop``'s default that Mask2Former keeps (close to
    the pixel mean, so the padding normalises to about 0).
    """

    image_size: int = 1024
    min_scale: float = 0.1
    max_scale: float = 2.0
    flip: bool = True
    pad_value: int = 128

    def draw(self, height: int, width: int, rng: np.random.Generator) -> Geometry:
        """Flip with prob 0.5, scale s ~ U(min, max): resize by min(S s / h, S s / w), then an S x S window at
        offset round(max(size - S, 0) * u), one u ~ U(0, 1) for both axes (detectron2's FixedSizeCrop)."""
        flip = self.flip and rng.random() < 0.5
        target = self.image_size * rng.uniform(self.min_scale, self.max_scale)
        factor = min(target / height, target / width)
        size = (max(1, int(np.round(height * factor))), max(1, int(np.round(width * factor))))
        u = rng.uniform(0.0, 1.0)
        s = self.image_size
        y0, x0 = (int(np.round(max(n - s, 0) * u)) for n in size)
        box = (y0, x0, y0 + min(size[0], s), x0 + min(size[1], s))
        return Geometry(size, box, flip, flip_first=True, pad_to=(s, s))


class InstanceDatasetMapper:
    """Callable mapping a panoptic record (``pan_seg_file_name`` + ``segments_info``) or an instance record
    (``annotations``) to ``{"file_name", "image_id"?, "image": uint8 (3, H, W), "instances": {"gt_masks": bool
    (T, H, W), "gt_classes": int64 (T,)}, "padding_mask": bool (H, W), "sem_seg"?: int64 (H, W), "height", "width"}``
    (training; ``height``/``width`` are the original size). Test: the image at the test resize, ``sem_seg`` (if the
    record has one) at the original size, no targets (evaluators read the ground truth files).

    ``semantic`` holds the ADE recipe's settings, the test resize, the ignore label and the channel order (one
    ``SemSegDatasetMapper.from_config`` validates them once for both mappers).
    """

    def __init__(
        self,
        is_train: bool,
        recipe: str = "lsj",
        lsj: LargeScaleJitter = LargeScaleJitter(),
        semantic: Optional[SemSegDatasetMapper] = None,
    ) -> None:
        if recipe not in RECIPES:
            raise ConfigError(f"instance mapper recipe must be one of {RECIPES}, got {recipe!r}")
        self.is_train = is_train
        self.recipe = recipe
        self.lsj = lsj
        self.semantic = semantic or SemSegDatasetMapper(is_train)

    @classmethod
    def from_config(cls, cfg: CfgNode, is_train: bool = True, recipe: str = "lsj") -> "InstanceDatasetMapper":
        """``recipe`` "lsj" reads INPUT.IMAGE_SIZE / MIN_SCALE / MAX_SCALE / RANDOM_FLIP; "semantic" the keys of
        ``SemSegDatasetMapper.from_config``."""
        semantic = SemSegDatasetMapper.from_config(cfg, is_train)
        if not 0 < cfg.INPUT.MIN_SCALE <= cfg.INPUT.MAX_SCALE:
            raise ConfigError(
                f"INPUT.MIN_SCALE {cfg.INPUT.MIN_SCALE} and INPUT.MAX_SCALE {cfg.INPUT.MAX_SCALE} must satisfy "
                f"0 < MIN_SCALE <= MAX_SCALE"
            )
        lsj = LargeScaleJitter(cfg.INPUT.IMAGE_SIZE, cfg.INPUT.MIN_SCALE, cfg.INPUT.MAX_SCALE, semantic.flip)
        return cls(is_train, recipe, lsj, semantic)

    def __call__(self, record: Dict, rng: Optional[np.random.Generator] = None) -> Dict:
        image = read_image(record["file_name"])
        height, width = image.shape[:2]
        out = {"file_name": record["file_name"], "height": height, "width": width}
        if "image_id" in record:
            out["image_id"] = record["image_id"]
        sem = self._read_sem_seg(record, (height, width))
        if not self.is_train:
            if "annotations" in record:  # the instance evaluator reads them: a bad one stops here, named
                check_annotations(record, (height, width))
            image = self.semantic.resize_for_test(image)
            out["image"] = self.semantic._to_chw(image)
            if sem is not None:
                out["sem_seg"] = torch.from_numpy(sem.astype(np.int64))
            return out
        if rng is None:
            raise ValueError("the training mapper needs an rng (numpy Generator) so samples are reproducible")
        if sem is not None and not _has_objects(record):
            return self._semantic_only(image, sem, out, rng)
        ids, seg_ids, masks, classes = self._read_targets(record, (height, width))
        segments = record.get("segments_info", ())

        def category() -> np.ndarray:
            if sem is not None:
                return sem
            return category_map((height, width), ids, segments, masks, classes, self.semantic.ignore_label)

        geometry, image_pad = self._draw((height, width), category, rng)
        image = geometry.apply(image, True, image_pad, self.semantic.resize_backend)
        if self.recipe == "semantic" and self.semantic.color_aug:
            image = T.photometric_distortion(image, rng)
        gt_masks = self._transform_targets(geometry, ids, seg_ids, masks, image.shape[:2])
        keep = gt_masks.reshape(len(gt_masks), -1).any(1)
        out["image"] = self.semantic._to_chw(image)
        out["instances"] = {
            "gt_masks": torch.from_numpy(gt_masks[keep]),
            "gt_classes": torch.tensor(classes, dtype=torch.int64).reshape(-1)[torch.from_numpy(keep)],
        }
        out["padding_mask"] = torch.from_numpy(geometry.padding_mask())
        if sem is not None:
            out["sem_seg"] = torch.from_numpy(geometry.apply(sem, False, self.semantic.ignore_label).astype(np.int64))
        return out

    def _semantic_only(self, image: np.ndarray, sem: np.ndarray, out: Dict, rng: np.random.Generator) -> Dict:
        """A record with a semantic map and no objects (a FreeMask synthetic pair mixed into panoptic / instance
        training by DATALOADER.SYN_RATIO): the same augmentation, ``sem_seg`` and no ``instances``, so the model
        gives it per-class targets."""
        geometry, image_pad = self._draw(sem.shape, lambda: sem, rng)
        image = geometry.apply(image, True, image_pad, self.semantic.resize_backend)
        if self.recipe == "semantic" and self.semantic.color_aug:
            image = T.photometric_distortion(image, rng)
        out["image"] = self.semantic._to_chw(image)
        out["padding_mask"] = torch.from_numpy(geometry.padding_mask())
        out["sem_seg"] = torch.from_numpy(geometry.apply(sem, False, self.semantic.ignore_label).astype(np.int64))
        return out

    @staticmethod
    def _transform_targets(
        geometry: Geometry,
        ids: Optional[np.ndarray],
        seg_ids: Optional[Sequence[int]],
        masks: Optional[List[np.ndarray]],
        out_shape: Tuple[int, ...],
    ) -> np.ndarray:
        """bool (T, H, W) target masks after ``geometry``, from a panoptic id map (``ids``, ``seg_ids``) or from
        instance bit ``masks``; empty ones are kept (the caller drops them with their classes)."""
        if ids is not None:
            ids = geometry.apply(ids, False, 0)
            return ids[None] == np.asarray(seg_ids, dtype=np.int32).reshape(-1, 1, 1)
        if masks:
            return np.stack([geometry.apply(m, False, 0) for m in masks]).astype(bool)
        return np.zeros((0, *out_shape), dtype=bool)

    # ------------------------------------------------------------------------------------------------- reading
    def _read_sem_seg(self, record: Dict, shape: Tuple[int, int]) -> Optional[np.ndarray]:
        path = record.get("sem_seg_file_name")
        if not path:
            return None
        sem = read_mask(path)
        if sem.shape != shape:
            raise DatasetError(
                f"{path}: semantic map is {sem.shape[1]}x{sem.shape[0]}, its image {shape[1]}x{shape[0]}"
            )
        if record.get("reduce_zero_label", False):
            sem = reduce_zero_label(sem, self.semantic.ignore_label)
        return sem

    def _read_targets(self, record: Dict, shape: Tuple[int, int]) -> tuple:
        """(ids, seg_ids, None, classes) for a panoptic record, (None, None, masks, classes) for an instance one;
        crowd segments / annotations are left out. Read and checked by ``object_records.py`` (RecordError naming
        the file); with ``num_classes`` set, a class outside the training vocabulary is one too."""
        if "pan_seg_file_name" in record:
            ids = panoptic_segment_ids(record, shape)
            segments = [s for s in record["segments_info"] if not s.get("iscrowd", 0)]
            targets = ids, [s["id"] for s in segments], None, [s["category_id"] for s in segments]
        elif "annotations" in record:
            masks, classes = instance_masks(record, shape)
            targets = None, None, masks, classes
        else:
            raise DatasetError(
                f"{record['file_name']}: the record has neither 'pan_seg_file_name' + 'segments_info' (panoptic) nor "
                f"'annotations' (instance); register the dataset with one of them for the instance / panoptic mapper"
            )
        num_classes = self.semantic.num_classes
        if num_classes is not None:
            vocabulary = (
                f"the training vocabulary (MODEL.SEM_SEG_HEAD.NUM_CLASSES {num_classes}); set NUM_CLASSES to the "
                "split's class count or fix its records"
            )
            check_object_classes(record, targets[3], num_classes, vocabulary)
        return targets

    # ------------------------------------------------------------------------------------------------ augmenting
    def _draw(
        self, shape: Tuple[int, int], category: Callable[[], np.ndarray], rng: np.random.Generator
    ) -> Tuple[Geometry, int]:
        """The geometry of this sample and the image's padding value; ``category`` gives the (H, W) category map
        the ADE recipe's crop check reads (built only when that check is on). Draws in SemSegDatasetMapper's order:
        shortest edge, crop, flip (the photometric draw follows in ``__call__``)."""
        if self.recipe == "lsj":
            return self.lsj.draw(shape[0], shape[1], rng), self.lsj.pad_value
        s = self.semantic
        short = T.sample_shortest_edge(s.min_size_train, s.min_size_train_sampling, rng)
        size = T.shortest_edge_size(shape[0], shape[1], short, s.max_size_train, s.resize_backend)
        if s.crop_size is None:
            return Geometry(size, (0, 0, size[0], size[1]), s.flip and rng.random() < 0.5), 0
        check = 0.0 < s.cat_max_ratio < 1.0
        resized = T.resize_mask(category(), size) if check else np.zeros(size, np.uint8)
        box = T.random_crop_box(resized, s.crop_size, rng, s.cat_max_ratio, s.ignore_label)
        return Geometry(size, box, s.flip and rng.random() < 0.5, pad_to=s.crop_size), 0


def _has_objects(record: Dict) -> bool:
    """Whether a record carries panoptic segments or instance annotations."""
    return "pan_seg_file_name" in record or "annotations" in record


def category_map(
    shape: Tuple[int, int],
    ids: Optional[np.ndarray],
    segments_info: Sequence[dict],
    masks: Optional[List[np.ndarray]],
    classes: Sequence[int],
    ignore_label: int,
) -> np.ndarray:
    """int32 (H, W) category per pixel for the crop's category-ratio check when the record has no semantic map:
    every panoptic segment (crowd included) or non-crowd instance mask painted with its class, the rest
    ``ignore_label``."""
    category = np.full(shape, ignore_label, dtype=np.int32)
    if ids is not None:
        for seg in segments_info:
            category[ids == seg["id"]] = seg["category_id"]
    else:
        for mask, c in zip(masks or (), classes):
            category[mask > 0] = c
    return category
