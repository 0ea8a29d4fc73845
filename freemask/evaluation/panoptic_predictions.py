"""The panoptic evaluator's saved predictions: one COCO panoptic PNG per image, written as the image is evaluated,
and ``panoptic_predictions.json``, written by rank 0 at the end.

Why per image: holding every encoded PNG until ``evaluate`` and gathering them to rank 0 costs rank 0 the PNGs of the
whole test set (GBs at COCO scale: 5k val2017 images, more for panoptic inference over a large set). Here each rank
writes its images' PNGs to disk as they arrive, each atomically (a PNG exists only once complete), and keeps only the
image's ``segments_info`` (a few numbers per segment); those alone are gathered to rank 0 for the JSON. PQ does not
need the PNGs: the evaluator turns each prediction into matching statistics as it arrives.

The files are those of COCO's panoptic format, what panopticapi scores (cocodataset/panopticapi,
panopticapi/evaluation.py, pq_compute: a folder of PNGs plus a JSON whose ``annotations`` name them):

- ``<stem>.png``: the prediction's segment ids as RGB, ``id = R + 256 G + 256² B``, ``<stem>`` the image file name
  without its extension;
- ``panoptic_predictions.json``: ``{"annotations": [{"image_id", "file_name": "<stem>.png", "segments_info":
  [{"id", "category_id" (dataset id), "score" (when predicted), "iscrowd": 0, "area"}]}], "categories": [{"id",
  "name", "isthing": 0/1}]}``, the annotations in rank order, each rank's in the order it evaluated them.
"""

import os
from typing import Dict, List, Mapping, Sequence

import cv2
import numpy as np

from ..data.panoptic_png import id2rgb
from ..errors import check_writable_folder
from ..utils.atomic import atomic_write_bytes
from .results_json import write_results_json

PREDICTIONS_DIR = "panoptic"
PREDICTIONS_JSON = "panoptic_predictions.json"


class PanopticPredictionWriter:
    """Writes the predictions of one evaluation pass under ``folder`` (``output_dir/panoptic``) on every rank.

    Args:
        folder: where the PNGs and the JSON go; created at the first image. Checked here, before any image is
            evaluated: a folder that cannot be written is an OutputNotWritableError (one line naming it).
        categories: every category ``{"id": dataset id, "name", "isthing"}``, for the JSON's ``categories``.
    """

    def __init__(self, folder: str, categories: Sequence[Mapping]) -> None:
        check_writable_folder(folder, "the folder of the saved panoptic predictions")
        self.folder = folder
        self.categories = [{"id": c["id"], "name": c["name"], "isthing": int(bool(c["isthing"]))} for c in categories]
        self.reset()

    def reset(self) -> None:
        """Start a new pass: forget this rank's annotations (PNGs already written stay, and are overwritten by
        the same images)."""
        self._annotations: List[dict] = []
        self._names: Dict[str, object] = {}
        self._folder_made = False

    @property
    def annotations(self) -> List[dict]:
        """This rank's ``annotations`` entries, in the order its images were written."""
        return self._annotations

    def write_image(self, image_id: object, file_name: str, pred_ids: np.ndarray, segments: List[dict]) -> None:
        """Write the PNG of ``pred_ids`` (int ``(H, W)``) for the image ``file_name`` and keep its annotation.

        ``segments``: ``[{"id", "category_id" (dataset id), "score" (optional)}]``; ``iscrowd`` 0 and the
        segment's ``area`` in pixels are added.
        """
        png_name = os.path.splitext(os.path.basename(file_name))[0] + ".png"
        if png_name in self._names:
            raise ValueError(_same_stem(png_name, [self._names[png_name], image_id], self.folder))
        ok, encoded = cv2.imencode(".png", id2rgb(pred_ids)[..., ::-1])  # RGB -> OpenCV's BGR
        if not ok:
            raise OSError(f"PNG encoding of the prediction for {file_name} failed")
        if not self._folder_made:
            os.makedirs(self.folder, exist_ok=True)
            self._folder_made = True
        atomic_write_bytes(os.path.join(self.folder, png_name), encoded.tobytes())
        labels, counts = np.unique(pred_ids, return_counts=True)
        area = dict(zip(labels.tolist(), counts.tolist()))
        segments_info = [{**s, "iscrowd": 0, "area": int(area.get(s["id"], 0))} for s in segments]
        self._names[png_name] = image_id
        self._annotations.append({"image_id": image_id, "file_name": png_name, "segments_info": segments_info})

    def write_json(self, annotations: List[dict]) -> None:
        """Write ``panoptic_predictions.json`` with every rank's ``annotations`` (rank 0, after gathering them)."""
        first_image: Dict[str, object] = {}
        for a in annotations:
            if a["file_name"] in first_image:  # two ranks wrote the same PNG: the second replaced the first
                raise ValueError(_same_stem(a["file_name"], [first_image[a["file_name"]], a["image_id"]], self.folder))
            first_image[a["file_name"]] = a["image_id"]
        write_results_json(
            os.path.join(self.folder, PREDICTIONS_JSON), {"annotations": annotations, "categories": self.categories}
        )


def _same_stem(png_name: str, image_ids: List[object], folder: str) -> str:
    return (
        f"images {image_ids[0]} and {image_ids[1]} share the file name stem of {png_name}, so their predictions "
        f"cannot both be saved in {folder}; evaluate a dataset whose image file names are unique, or turn "
        "TEST.SAVE_PREDICTIONS off"
    )
