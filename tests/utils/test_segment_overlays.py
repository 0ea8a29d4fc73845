"""Panoptic and instance figures on hand-made segments: fills in the class colour, white outlines that keep touching
instances apart, names on the segments, legends of the drawn classes."""

import numpy as np

from freemask.utils import segment_overlays as S
from freemask.utils import visualizer as V

NAMES = ["sky", "road", "car", "person"]
COLORS = [[70, 130, 180], [128, 64, 128], [0, 0, 142], [220, 20, 60]]
WHITE = np.array(S.OUTLINE_COLOR, np.uint8)
BOX = np.array(V.BACKGROUND, np.uint8)


def is_color(image, color):
    return np.all(image == np.asarray(color, np.uint8), axis=-1)


def test_edges_are_the_inner_outline_of_each_region_and_never_void():
    regions = np.zeros((6, 8), np.int64)
    regions[1:5, 1:4] = 1
    regions[1:5, 4:7] = 2
    found = S.edges(regions)
    expected = np.zeros((6, 8), bool)
    for r in (1, 2):
        inside = regions == r
        interior = inside.copy()
        interior[1:-1, 1:-1] = inside[1:-1, 1:-1] & inside[:-2, 1:-1] & inside[2:, 1:-1]
        interior[1:-1, 1:-1] &= inside[1:-1, :-2] & inside[1:-1, 2:]
        expected |= inside & ~interior
    np.testing.assert_array_equal(found, expected)
    assert not found[regions == 0].any()
    # the image border is not an edge: a region filling the image has none
    assert not S.edges(np.ones((5, 5), np.int64)).any()


def _panoptic_scene():
    """A sky band (stuff), two cars touching side by side, a tiny person, void below."""
    image = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    seg = np.zeros((120, 160), np.int32)
    seg[:40] = 1
    seg[40:90, 10:70] = 2
    seg[40:90, 70:130] = 3
    seg[40:44, 140:144] = 7  # too small for its name
    info = [
        {"id": 1, "category_id": 0, "isthing": False},
        {"id": 2, "category_id": 2, "isthing": True},
        {"id": 3, "category_id": 2, "isthing": True},
        {"id": 7, "category_id": 3, "isthing": True},
    ]
    return image, seg, info


def test_panoptic_overlay_fills_outlines_and_names_each_segment():
    image, seg, info = _panoptic_scene()
    out = S.panoptic_overlay(image, seg, info, COLORS, NAMES, opacity=1.0)
    np.testing.assert_array_equal(out[seg == 0], image[seg == 0])  # void shows the image
    edge = S.edges(seg)
    assert is_color(out, WHITE)[edge].mean() > 0.9  # outlines, save where a name box covers them
    # the two cars touch: a white line separates them along the whole shared side (rows 42..87, away from corners)
    assert is_color(out[42:88, 69:71], WHITE).all()
    for segment in info:
        inside = (seg == segment["id"]) & ~edge
        colored = is_color(out, COLORS[segment["category_id"]])[inside].mean()
        boxed = is_color(out, BOX)[inside].mean()
        if segment["id"] == 7:
            assert colored == 1.0  # no name: it would hide the segment
        else:
            # a name box (light background, dark text) sits inside, the rest is the class colour
            assert 0.0 < boxed < 0.3 and colored + boxed > 0.8
    # each name is centred in its segment: the box of the left car around the car's centre (row 65, column 40)
    rows, cols = np.nonzero(is_color(out, BOX) & (seg == 2))
    assert abs(rows.mean() - 64.5) < 3 and abs(cols.mean() - 39.5) < 3
    # legible: dark text on the light box
    box = out[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    assert (box.max(-1) < 100).sum() > 20
    # opacity 0.5: the fill is blended with the image
    half = S.panoptic_overlay(image, seg, info, COLORS, NAMES, opacity=0.5).astype(int)
    expected = (image.astype(int) + np.asarray(COLORS[0])) / 2
    assert np.abs(half[:36, :40] - expected[:36, :40]).max() <= 1  # sky, away from its name


def test_panoptic_figure_enlarges_small_images_and_lists_the_classes_drawn():
    image, seg, info = _panoptic_scene()
    figure = S.panoptic_figure(image, seg, info, NAMES, COLORS, opacity=1.0)
    shown = V.upscale_small(image)
    height, width = shown.shape[:2]
    assert height == 3 * 120 and figure.shape[0] == height  # 120 px: 3 x to reach 256
    np.testing.assert_array_equal(figure[:, :width], shown)
    overlay = figure[:, width + V.PANEL_GAP : 2 * width + V.PANEL_GAP]
    big = V.upscale_small(seg)
    # outlines are drawn at display size: one pixel each side of an edge, not one enlarged pixel
    assert is_color(overlay[126:264, 209:211], WHITE).all() and not is_color(overlay[126:264, 206:209], WHITE).any()
    assert is_color(overlay, COLORS[2])[big == 2].mean() > 0.8
    legend = figure[:, 2 * width + 2 * V.PANEL_GAP :]
    expected = V.draw_legend(["sky", "car", "person"], [COLORS[c] for c in (0, 2, 3)], height)
    np.testing.assert_array_equal(legend, expected)


def test_instance_overlay_draws_the_best_on_top_and_outlines_every_instance():
    image = np.full((160, 160, 3), 90, np.uint8)
    masks = np.zeros((2, 160, 160), bool)
    masks[0, 10:80, 10:80] = True  # car, 0.4
    masks[1, 40:140, 40:140] = True  # person, 0.9, over the car's corner
    out = S.instance_overlay(image, masks, [2, 3], [0.4, 0.9], COLORS, NAMES, opacity=1.0)
    outside = ~masks.any(0)
    np.testing.assert_array_equal(out[outside], image[outside])
    # the higher score on top where they overlap (below the car's name, which is drawn over both)
    overlap = masks[0] & masks[1] & ~S.edges(masks[0]) & ~S.edges(masks[1])
    assert is_color(out, COLORS[3])[56:80][overlap[56:80]].mean() > 0.95
    # every instance outlined, the car's outline still visible inside the person
    for k in range(2):
        assert is_color(out, WHITE)[S.edges(masks[k])].mean() > 0.8
    assert is_color(out[40:80, 79], WHITE).all()
    # the person's name (with its score) centred on it
    rows, cols = np.nonzero(is_color(out[80:100], BOX))
    assert abs(cols.mean() - 89.5) < 3 and abs(rows.mean() + 80 - 89.5) < 3
    assert (out[80:100].max(-1)[rows.min() :, cols.min() : cols.max()] < 100).sum() > 20  # dark text
    lower = S.instance_overlay(image, masks, [2, 3], [0.4, 0.1], COLORS, NAMES, opacity=1.0)
    assert is_color(lower, COLORS[2])[56:80][overlap[56:80]].mean() > 0.95  # now the car is the better one


def test_instance_figure_legend_and_nothing_to_draw():
    image = np.full((64, 64, 3), 90, np.uint8)
    masks = np.zeros((1, 64, 64), bool)
    masks[0, 8:40, 8:40] = True
    figure = S.instance_figure(image, masks, [3], [0.7], NAMES, COLORS, opacity=1.0)
    assert figure.shape[0] == 256
    legend = figure[:, 2 * 256 + 2 * V.PANEL_GAP :]
    np.testing.assert_array_equal(legend, V.draw_legend(["person"], [COLORS[3]], 256))
    empty = S.instance_figure(image, np.zeros((0, 64, 64), bool), [], [], NAMES, COLORS, opacity=1.0)
    assert empty.shape == (256, 2 * 256 + V.PANEL_GAP, 3)
    np.testing.assert_array_equal(empty[:, 256 + V.PANEL_GAP :], V.upscale_small(image))
