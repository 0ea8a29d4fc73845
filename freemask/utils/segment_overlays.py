"""Figures of panoptic segments and scored instances: class colours, outlines, a name on each segment, a legend.

The semantic figures of ``visualizer.py`` colour a label map, which says nothing about where one car ends and the
next begins. Panoptic segments and instances are drawn here instead as regions: filled with their class colour
(blended over the image), outlined in white so that touching segments of one class stay apart, and named on the
segment itself ("car", or "car 0.87" with an instance's score), with the legend of the classes drawn next to them.

Fills use the exact class colour, not a per-instance jitter as detectron2's visualizer does, so the legend's
swatches match the fills and a figure can be read by machine; the outlines carry the instance identity. Everything
is drawn at display size (small images enlarged first, as ``visualizer.upscale_small``), so outlines stay one pixel
thin and names legible whatever the input size. numpy and OpenCV only, like ``visualizer.py``.
"""

from collections.abc import Sequence

import cv2
import numpy as np

from .visualizer import (
    BACKGROUND,
    FONT,
    LEGEND_SCALE,
    MIN_PANEL_SIDE,
    TEXT_COLOR,
    Color,
    blend,
    draw_legend,
    hstack_panels,
    note_panel,
    upscale_factor,
)

OUTLINE_COLOR: Color = (255, 255, 255)
# Padding (pixels) between a segment's name and the edge of the light box it is written on.
LABEL_PAD = 2


def edges(regions: np.ndarray) -> np.ndarray:
    """Bool ``(H, W)``: pixels of a non-zero region with a 4-neighbour in another region (0 = void, never an edge
    itself). For a bool mask, its inner outline. The image border is not an edge."""
    differs = np.zeros(regions.shape, dtype=bool)
    differs[1:] |= regions[1:] != regions[:-1]
    differs[:-1] |= regions[:-1] != regions[1:]
    differs[:, 1:] |= regions[:, 1:] != regions[:, :-1]
    differs[:, :-1] |= regions[:, :-1] != regions[:, 1:]
    return differs & (regions != 0)


def label_box(text: str) -> tuple[int, int, int]:
    """(width, height, baseline) in pixels of ``text`` written on its box."""
    (width, height), baseline = cv2.getTextSize(text, FONT, LEGEND_SCALE, 1)
    return width + 2 * LABEL_PAD, height + baseline + 2 * LABEL_PAD, baseline


def draw_label(panel: np.ndarray, text: str, mask: np.ndarray) -> bool:
    """Write ``text`` (black on a light box) centred on the point of ``mask`` farthest from its outline (of those, the
    one nearest the mask's centroid: the middle of a rectangle), kept inside the panel; in place. Returns False,
    drawing nothing, when the region has fewer pixels than the box: the name would hide it (the legend still names
    its class)."""
    width, height, baseline = label_box(text)
    if int(mask.sum()) < width * height:
        return False
    # distance to the nearest pixel outside the mask, the image border counting as outside
    distance = cv2.distanceTransform(np.pad(mask, 1).astype(np.uint8), cv2.DIST_L2, 3)[1:-1, 1:-1]
    rows, cols = np.nonzero(distance >= distance.max())
    ys, xs = np.nonzero(mask)
    nearest = int(np.argmin((rows - ys.mean()) ** 2 + (cols - xs.mean()) ** 2))
    cy, cx = int(rows[nearest]), int(cols[nearest])
    left = int(np.clip(cx - width // 2, 0, max(0, panel.shape[1] - width)))
    top = int(np.clip(cy - height // 2, 0, max(0, panel.shape[0] - height)))
    panel[top : top + height, left : left + width] = BACKGROUND
    origin = (left + LABEL_PAD, top + height - LABEL_PAD - baseline)
    cv2.putText(panel, text, origin, FONT, LEGEND_SCALE, TEXT_COLOR, 1, cv2.LINE_AA)
    return True


def panoptic_overlay(
    image: np.ndarray,
    panoptic_seg: np.ndarray,
    segments_info: Sequence[dict],
    colors: Sequence[Sequence[int]],
    names: Sequence[str],
    opacity: float,
) -> np.ndarray:
    """``image`` (H, W, 3) with each segment of ``panoptic_seg`` (H, W) (ids of ``segments_info`` entries
    ``{"id", "category_id"}``, 0 or an unlisted id = void) filled with its class colour at ``opacity``, outlined,
    and named. Void pixels show the image as is."""
    filled = image.copy()
    regions = np.zeros(panoptic_seg.shape, dtype=np.int64)
    for segment in segments_info:
        inside = panoptic_seg == segment["id"]
        filled[inside] = colors[segment["category_id"]]
        regions[inside] = segment["id"]
    out = blend(image, filled, opacity)
    out[edges(regions)] = OUTLINE_COLOR
    for segment in segments_info:
        draw_label(out, names[segment["category_id"]], regions == segment["id"])
    return out


def instance_overlay(
    image: np.ndarray,
    masks: np.ndarray,
    classes: Sequence[int],
    scores: Sequence[float],
    colors: Sequence[Sequence[int]],
    names: Sequence[str],
    opacity: float,
) -> np.ndarray:
    """``image`` (H, W, 3) with each instance of ``masks`` (N, H, W) bool filled with its class colour at
    ``opacity`` (a higher score drawn over a lower one where they overlap), every instance outlined, even where a
    higher one covers it, and named "name score"."""
    order = np.argsort(np.asarray(scores, dtype=np.float64), kind="stable")  # ascending: the best drawn last
    filled = image.copy()
    for i in order:
        filled[masks[i]] = colors[classes[i]]
    covered = masks.any(0)
    out = image.copy()
    out[covered] = blend(image, filled, opacity)[covered]
    for i in order:
        out[edges(masks[i])] = OUTLINE_COLOR
    for i in order:
        draw_label(out, f"{names[classes[i]]} {scores[i]:.2f}", masks[i])
    return out


def _figure(
    image: np.ndarray, overlay: np.ndarray, classes: Sequence[int], names, colors, note: Sequence[str]
) -> np.ndarray:
    """image | overlay, then the legend of ``classes`` (each once, by id), then the ``note`` lines if any."""
    present = sorted(set(int(c) for c in classes))
    legend = draw_legend([names[c] for c in present], [colors[c] for c in present], image.shape[0])
    notes = [note_panel(note, image.shape[0])] if note else []
    return hstack_panels([image, overlay] + ([legend] if present else []) + notes)


def _enlarge(array: np.ndarray, factor: int, axes: tuple[int, int] = (0, 1)) -> np.ndarray:
    return np.repeat(np.repeat(array, factor, axis=axes[0]), factor, axis=axes[1]) if factor > 1 else array


def panoptic_figure(
    image: np.ndarray,
    panoptic_seg: np.ndarray,
    segments_info: Sequence[dict],
    names: Sequence[str],
    colors: Sequence[Sequence[int]],
    opacity: float,
    min_side: int = MIN_PANEL_SIDE,
    note: Sequence[str] = (),
) -> np.ndarray:
    """image | panoptic overlay | legend of the segments' classes | ``note`` (the demo says there why nothing is
    drawn), small images enlarged (``upscale_factor``)."""
    factor = upscale_factor(image.shape, min_side)
    shown = _enlarge(image, factor)
    overlay = panoptic_overlay(shown, _enlarge(panoptic_seg, factor), segments_info, colors, names, opacity)
    return _figure(shown, overlay, [s["category_id"] for s in segments_info], names, colors, note)


def instance_figure(
    image: np.ndarray,
    masks: np.ndarray,
    classes: Sequence[int],
    scores: Sequence[float],
    names: Sequence[str],
    colors: Sequence[Sequence[int]],
    opacity: float,
    min_side: int = MIN_PANEL_SIDE,
    note: Sequence[str] = (),
) -> np.ndarray:
    """image | instance overlay | legend of the instances' classes | ``note``, small images enlarged
    (``upscale_factor``)."""
    factor = upscale_factor(image.shape, min_side)
    shown = _enlarge(image, factor)
    overlay = instance_overlay(shown, _enlarge(masks, factor, (1, 2)), classes, scores, colors, names, opacity)
    return _figure(shown, overlay, classes, names, colors, note)
