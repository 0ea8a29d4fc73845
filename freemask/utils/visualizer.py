"""Rendering of label maps for people: palette colouring, overlays, legends, side-by-side panels, atomic PNG saves.

Shared by ``tools/visualize_filtered.py`` (image | synthetic mask | mask with the filtered pixels in white, as in the
FreeMask paper's appendix figures), ``tools/demo.py`` (image | prediction overlay, with a legend) and the trainer's
TensorBoard panels (image | ground truth | prediction at each periodic evaluation). Everything works on
uint8 RGB ``(H, W, 3)`` arrays and integer ``(H, W)`` label maps with numpy and OpenCV only, so rendering thousands
of panels needs neither torch nor a plotting library.

Layout colours are chosen so the figures stay readable by machine as well: the background of gaps, titles and
legends is a light grey (never pure white, which marks filtered pixels) and text is black.
"""

import os
from collections.abc import Sequence

import cv2
import numpy as np

from .atomic import atomic_write_bytes

Color = tuple[int, int, int]

BACKGROUND: Color = (235, 235, 235)
TEXT_COLOR: Color = (0, 0, 0)
IGNORE_COLOR: Color = (0, 0, 0)
FILTERED_COLOR: Color = (255, 255, 255)
PANEL_GAP = 4
# Legend geometry (pixels): a SWATCH x SWATCH colour square, then the class name, one entry per LEGEND_ROW.
SWATCH = 12
LEGEND_ROW = 16
LEGEND_PAD = 4
FONT = cv2.FONT_HERSHEY_SIMPLEX
LEGEND_SCALE = 0.4
_TITLE_SCALE = 0.45
_MIN_TITLE_SCALE = 0.3
# Panels whose shorter side is below this are enlarged (nearest neighbour, integer factor) so small images such as
# the 128x128 toy data stay readable next to a legend whose text has a fixed size.
MIN_PANEL_SIDE = 256


def colorize(labels: np.ndarray, colors: Sequence[Sequence[int]], ignore_color: Color = IGNORE_COLOR) -> np.ndarray:
    """RGB ``(H, W, 3)`` uint8 image of a label map: class ``c`` in ``colors[c]``; any other value (the ignore label,
    an out-of-range label) in ``ignore_color``."""
    palette = np.asarray(colors, dtype=np.uint8).reshape(-1, 3)
    out = np.empty((*labels.shape, 3), dtype=np.uint8)
    out[...] = ignore_color
    valid = (labels >= 0) & (labels < len(palette))
    out[valid] = palette[labels[valid]]
    return out


def blend(image: np.ndarray, overlay: np.ndarray, opacity: float) -> np.ndarray:
    """``(1 - opacity) * image + opacity * overlay``, rounded to uint8; opacity 0 gives the image, 1 the overlay."""
    if image.shape != overlay.shape:
        raise ValueError(f"cannot blend an image {image.shape} with an overlay {overlay.shape}")
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be in [0, 1], got {opacity}")
    return cv2.addWeighted(image, 1.0 - opacity, overlay, opacity, 0.0)


def classes_present(labels: np.ndarray, num_classes: int) -> list[int]:
    """Sorted class ids ``0..num_classes-1`` that occur in ``labels`` (ignored / out-of-range values left out)."""
    values = labels[(labels >= 0) & (labels < num_classes)]
    return np.flatnonzero(np.bincount(values.ravel().astype(np.int64), minlength=num_classes)).tolist()


def upscale_factor(size: Sequence[int], min_side: int = MIN_PANEL_SIDE) -> int:
    """The integer factor ``upscale_small`` enlarges an image of ``size`` (H, W) by (1 when it is large enough), for
    drawings that must enlarge several arrays (an image and its instance masks) alike."""
    return max(1, -(-min_side // max(1, min(size[:2]))))


def upscale_small(image: np.ndarray, min_side: int = MIN_PANEL_SIDE) -> np.ndarray:
    """``image`` (RGB or a label map) enlarged by the smallest integer factor that brings its shorter side to at least
    ``min_side``; unchanged when it already is. Pixel repetition, not interpolation: every output colour is an input
    colour, so class colours stay exact and label edges crisp."""
    factor = upscale_factor(image.shape[:2], min_side)
    if factor <= 1:
        return image
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def class_legend(
    label_maps: Sequence[np.ndarray], names: Sequence[str], colors: Sequence[Sequence[int]], height: int
) -> np.ndarray | None:
    """Legend of the classes that occur in any of ``label_maps`` (None when none does)."""
    present = sorted(set().union(*(classes_present(labels, len(names)) for labels in label_maps)))
    if not present:
        return None
    return draw_legend([names[c] for c in present], [colors[c] for c in present], height)


def labelled_panels(
    panels: Sequence[np.ndarray],
    label_maps: Sequence[np.ndarray],
    names: Sequence[str],
    colors: Sequence[Sequence[int]],
    min_side: int = MIN_PANEL_SIDE,
) -> np.ndarray:
    """Equal-size RGB ``panels`` side by side, each enlarged by ``upscale_small``, then a legend of the classes in
    ``label_maps`` (the masks the panels show): the figure of the demo, the filter visualisation and TensorBoard."""
    shown = [upscale_small(p, min_side) for p in panels]
    legend = class_legend(label_maps, names, colors, shown[0].shape[0])
    return hstack_panels(shown + ([legend] if legend is not None else []))


def prediction_panel(
    image: np.ndarray,
    ground_truth: np.ndarray,
    prediction: np.ndarray,
    names: Sequence[str],
    colors: Sequence[Sequence[int]],
) -> np.ndarray:
    """image | ground truth | prediction (palette colours, ignored pixels black) with a legend of both masks."""
    return labelled_panels(
        [image, colorize(ground_truth, colors), colorize(prediction, colors)], [ground_truth, prediction], names, colors
    )


def _text_width(text: str, scale: float) -> int:
    (width, _), _ = cv2.getTextSize(text, FONT, scale, 1)
    return width


def draw_legend(names: Sequence[str], colors: Sequence[Sequence[int]], height: int) -> np.ndarray:
    """RGB legend of ``(name, colour)`` entries in columns of ``height`` pixels (at least one entry per column).

    Entries fill a column top to bottom and spill into further columns, so the legend has the height of the image it
    sits next to whatever the number of classes; the width follows the longest name of each column. No entries give
    a ``(height, 0, 3)`` array.
    """
    if len(names) != len(colors):
        raise ValueError(f"{len(names)} legend names for {len(colors)} colours")
    per_column = max(1, (height - LEGEND_PAD) // LEGEND_ROW)
    columns = [range(i, min(i + per_column, len(names))) for i in range(0, len(names), per_column)]
    widths = [LEGEND_PAD + SWATCH + LEGEND_PAD + max(_text_width(names[i], LEGEND_SCALE) for i in c) for c in columns]
    total_height = max(height, LEGEND_PAD + LEGEND_ROW * min(per_column, len(names)))
    legend = _canvas(total_height, sum(widths) + LEGEND_PAD * bool(columns))
    x = 0
    for column, width in zip(columns, widths):
        for row, index in enumerate(column):
            top = LEGEND_PAD + row * LEGEND_ROW
            left = x + LEGEND_PAD
            legend[top : top + SWATCH, left : left + SWATCH] = colors[index]
            baseline = top + SWATCH - 2
            cv2.putText(legend, names[index], (left + SWATCH + LEGEND_PAD, baseline), FONT, LEGEND_SCALE,
                        TEXT_COLOR, 1, cv2.LINE_AA)  # fmt: skip
        x += width
    return legend


def title_strip(lines: Sequence[str], width: int) -> np.ndarray:
    """RGB strip of ``width`` pixels with one text line per entry, each shrunk (down to a minimum size, then clipped)
    to fit the width, so titles stay on small panels."""
    row = 18
    strip = _canvas(row * len(lines) + LEGEND_PAD, width)
    for i, text in enumerate(lines):
        scale = _TITLE_SCALE
        while scale > _MIN_TITLE_SCALE and _text_width(text, scale) > width - 2 * LEGEND_PAD:
            scale -= 0.05
        cv2.putText(strip, text, (LEGEND_PAD, row * (i + 1) - 4), FONT, scale, TEXT_COLOR, 1, cv2.LINE_AA)
    return strip


def note_panel(lines: Sequence[str], height: int) -> np.ndarray:
    """RGB panel of ``height`` pixels with one text line per entry (legend-sized text, top-aligned), as wide as its
    longest line: what a figure shows in the legend's place when it has nothing to draw and says why."""
    width = LEGEND_PAD * 2 + max((_text_width(text, LEGEND_SCALE) for text in lines), default=0)
    panel = _canvas(max(height, LEGEND_PAD + LEGEND_ROW * len(lines)), width)
    for i, text in enumerate(lines):
        baseline = LEGEND_PAD + i * LEGEND_ROW + SWATCH - 2
        cv2.putText(panel, text, (LEGEND_PAD, baseline), FONT, LEGEND_SCALE, TEXT_COLOR, 1, cv2.LINE_AA)
    return panel


def hstack_panels(panels: Sequence[np.ndarray], gap: int = PANEL_GAP) -> np.ndarray:
    """Panels side by side, ``gap`` background pixels between them; a shorter panel is padded with background at
    the bottom (a legend taller than a tiny image)."""
    height = max(p.shape[0] for p in panels)
    parts: list[np.ndarray] = []
    for i, panel in enumerate(panels):
        if i:
            parts.append(_canvas(height, gap))
        if panel.shape[0] < height:
            panel = np.concatenate([panel, _canvas(height - panel.shape[0], panel.shape[1])], axis=0)
        parts.append(panel)
    return np.concatenate(parts, axis=1)


def vstack(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    """``top`` above ``bottom``, the narrower one padded on the right with background."""
    width = max(top.shape[1], bottom.shape[1])
    parts = []
    for part in (top, bottom):
        if part.shape[1] < width:
            part = np.concatenate([part, _canvas(part.shape[0], width - part.shape[1])], axis=1)
        parts.append(part)
    return np.concatenate(parts, axis=0)


def _canvas(height: int, width: int) -> np.ndarray:
    canvas = np.empty((height, width, 3), dtype=np.uint8)
    canvas[...] = BACKGROUND
    return canvas


def save_image(path: str, image: np.ndarray) -> None:
    """Write an RGB image (or a single-channel label map, kept as is) atomically: a hidden temporary file in the
    same folder renamed into place, so an existing file is always complete and a re-run may skip it."""
    data = image[:, :, ::-1] if image.ndim == 3 else image
    ok, encoded = cv2.imencode(os.path.splitext(path)[1] or ".png", np.ascontiguousarray(data))
    if not ok:
        raise OSError(f"{path}: encoding failed for an array of shape {image.shape} and dtype {image.dtype}")
    atomic_write_bytes(path, encoded.tobytes())
