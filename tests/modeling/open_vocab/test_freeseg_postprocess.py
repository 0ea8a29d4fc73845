"""FreeSeg's panoptic and instance rules (MODEL.MASK_FORMER.TEST.POSTPROCESS "freeseg" and "freeseg_corrected")
against the step-by-step reading of tests/modeling/freeseg_reference.py, on hand-made cases where they differ from
Mask2Former's rules, on random ones, and the nearest-neighbour resizing of FreeSeg's forward (PIL's)."""

import numpy as np
import pytest
import torch

from freemask.modeling.open_vocab.freeseg_postprocess import (
    freeseg_instances,
    freeseg_panoptic,
    resize_instances,
    resize_nearest,
    resize_panoptic,
)
from freemask.modeling.postprocess import instance_from_probs, panoptic_segments

H, W = 8, 8


def box(rows, cols, inside=4.0, outside=-20.0):
    logits = torch.full((H, W), outside)
    logits[rows[0] : rows[1], cols[0] : cols[1]] = inside
    return logits


def probs_of(*rows):
    return torch.tensor(rows, dtype=torch.float32)


def mask2former_panoptic(probs, masks, thing_ids, overlap):
    """Mask2Former's rule on the same sharpened scores (object threshold 0), for contrast."""
    scores, labels = torch.softmax(probs / 0.01, -1).max(-1)
    return panoptic_segments(scores, labels, torch.ones_like(labels, dtype=torch.bool), masks, thing_ids, overlap)


def assert_panoptic_matches(got, want):
    assert torch.equal(got[0], want[0]) and got[1] == want[1]


def assert_instances_match(got, want):
    masks, scores, classes = want
    assert torch.equal(got["pred_masks"], masks) and torch.equal(got["pred_classes"], classes)
    torch.testing.assert_close(got["scores"], scores)


# --------------------------------------------------------------------------------------------------------- panoptic
def test_a_segment_is_its_mask_where_the_semantic_map_names_its_class(freeseg_reference):
    # a car (rows 0-5) and grass (rows 4-7) overlapping on rows 4-5, where the semantic map says grass (0.95 > 0.9)
    probs = probs_of([0.0, 0.9, 0.05], [0.0, 0.02, 0.95])
    masks = torch.stack([box((0, 6), (0, 8)), box((4, 8), (0, 8))])
    got = freeseg_panoptic(probs, masks, thing_ids=(1,), num_train_classes=3, overlap_threshold=0.5)
    assert_panoptic_matches(got, freeseg_reference.panoptic(probs, masks, (1,), 3, 0.5))
    expected = torch.zeros(H, W, dtype=torch.int32)
    expected[4:] = 2
    expected[:4] = 1
    assert torch.equal(got[0], expected)
    assert got[1] == [{"id": 1, "isthing": True, "category_id": 1}, {"id": 2, "isthing": False, "category_id": 2}]
    # Mask2Former gives the tied rows to the first query instead
    assert not torch.equal(mask2former_panoptic(probs, masks, (1,), 0.5)[0], got[0])


def test_a_thing_below_score_0_5_is_dropped_and_stuff_queries_merge(freeseg_reference):
    # query 0: a thing whose three classes are near-equal (sharpened 0.45); queries 1 and 2: the same stuff class
    probs = probs_of([0.30, 0.305, 0.30], [0.0, 0.0, 0.9], [0.0, 0.0, 0.8])
    masks = torch.stack([box((0, 4), (0, 8)), box((4, 6), (0, 8)), box((6, 8), (0, 8))])
    got = freeseg_panoptic(probs, masks, thing_ids=(1,), num_train_classes=3, overlap_threshold=0.0)
    assert_panoptic_matches(got, freeseg_reference.panoptic(probs, masks, (1,), 3, 0.0))
    assert got[1] == [{"id": 1, "isthing": False, "category_id": 2}]
    assert (got[0][:4] == 0).all() and (got[0][4:] == 1).all(), "the thing dropped, the stuff queries one segment"
    kept = mask2former_panoptic(probs, masks, (1,), 0.0)[1]
    assert any(s["isthing"] for s in kept), "Mask2Former keeps the thing (no score rule)"


def test_the_label_equal_to_the_training_class_count_is_dropped_unless_corrected(freeseg_reference):
    probs = probs_of([0.0, 0.0, 0.9], [0.9, 0.0, 0.0])  # query 0's class 2 = the 2 training classes
    masks = torch.stack([box((0, 4), (0, 8)), box((4, 8), (0, 8))])
    released = freeseg_panoptic(probs, masks, (), num_train_classes=2, overlap_threshold=0.0)
    corrected = freeseg_panoptic(probs, masks, (), num_train_classes=2, overlap_threshold=0.0, corrected=True)
    assert_panoptic_matches(released, freeseg_reference.panoptic(probs, masks, (), 2, 0.0))
    assert_panoptic_matches(corrected, freeseg_reference.panoptic(probs, masks, (), 2, 0.0, corrected=True))
    assert [s["category_id"] for s in released[1]] == [0]
    assert [s["category_id"] for s in corrected[1]] == [2, 0]


def test_a_later_segment_paints_over_and_the_resize_keeps_only_present_ids(freeseg_reference):
    probs = probs_of([0.0, 0.9], [0.0, 0.8])  # two cars, the second one's mask contains the first
    masks = torch.stack([box((2, 4), (2, 4)), box((0, 6), (0, 6))])
    got = freeseg_panoptic(probs, masks, thing_ids=(1,), num_train_classes=2, overlap_threshold=0.0)
    assert_panoptic_matches(got, freeseg_reference.panoptic(probs, masks, (1,), 2, 0.0))
    assert [s["id"] for s in got[1]] == [1, 2] and set(got[0].unique().tolist()) == {0, 2}
    ids, info = resize_panoptic(got, (11, 13))
    assert [s["id"] for s in info] == [2]
    np.testing.assert_array_equal(ids.numpy(), freeseg_reference.pil_nearest(got[0].numpy(), (11, 13)))


# --------------------------------------------------------------------------------------------------------- instances
def test_the_last_class_is_never_an_instance_unless_corrected(freeseg_reference):
    probs = probs_of([0.0, 0.5, 0.9])  # best class 2, the last one; class 1 second
    masks = box((0, 4), (0, 8))[None]
    released = freeseg_instances(probs, masks, thing_ids=(1, 2), overlap_threshold=0.0)
    corrected = freeseg_instances(probs, masks, thing_ids=(1, 2), overlap_threshold=0.0, corrected=True)
    assert_instances_match(released, freeseg_reference.instances(probs, masks, (1, 2), 0.0))
    assert_instances_match(corrected, freeseg_reference.instances(probs, masks, (1, 2), 0.0, corrected=True))
    assert released["pred_classes"].tolist() == [], "class 1's sharpened score is ~exp(-40): below 0.5"
    assert corrected["pred_classes"].tolist() == [2]
    assert 2 in instance_from_probs(torch.softmax(probs / 0.01, -1), masks, 10, (1, 2), True)["pred_classes"]


def test_masks_are_the_logits_thresholded_at_0_5(freeseg_reference):
    probs = probs_of([0.0, 0.9, 0.0], [0.0, 0.0, 0.0])
    masks = torch.stack([box((0, 4), (0, 8), inside=0.3), box((4, 8), (0, 8), inside=-1.0)])  # sigmoid(0.3) = 0.57
    got = freeseg_instances(probs, masks, thing_ids=(1,), overlap_threshold=0.0)
    assert_instances_match(got, freeseg_reference.instances(probs, masks, (1,), 0.0))
    assert got["pred_classes"].tolist() == [], "logit 0.3 < 0.5: no mask to keep"
    masks[0, :4] = 0.6
    got = freeseg_instances(probs, masks, thing_ids=(1,), overlap_threshold=0.0)
    assert got["pred_classes"].tolist() == [1]
    mean_sigmoid = torch.sigmoid(torch.tensor(0.6))
    torch.testing.assert_close(got["scores"], torch.softmax(probs[0] / 0.01, -1)[1:2] * mean_sigmoid)


def test_duplicates_released_one_group_corrected_one_group_per_class(freeseg_reference):
    # a car (rows 0-5, 48 px) and a person inside it (rows 1-5, 40 px): the person covers 40 / 48 > 0.8 of the car.
    # FreeSeg's released code groups all kept queries together (its leftover loop variable), so the car, the
    # largest, is dropped as a duplicate of a person; one group per class keeps both.
    probs = probs_of([0.0, 0.9, 0.0, 0.0], [0.0, 0.0, 0.95, 0.0])
    masks = torch.stack([box((0, 6), (0, 8)), box((1, 6), (0, 8))])
    released = freeseg_instances(probs, masks, thing_ids=(1, 2), overlap_threshold=0.0)
    corrected = freeseg_instances(probs, masks, thing_ids=(1, 2), overlap_threshold=0.0, corrected=True)
    assert_instances_match(released, freeseg_reference.instances(probs, masks, (1, 2), 0.0))
    assert_instances_match(corrected, freeseg_reference.instances(probs, masks, (1, 2), 0.0, corrected=True))
    assert released["pred_classes"].tolist() == [2]
    assert corrected["pred_classes"].tolist() == [1, 2]
    # two cars the same way: a duplicate in both readings
    probs[1] = probs[0]
    both = [freeseg_instances(probs, masks, (1, 2), 0.0, corrected=c)["pred_classes"].tolist() for c in (False, True)]
    assert both == [[1], [1]]


def test_only_things_no_top_k_and_the_overlap_is_strict(freeseg_reference):
    probs = probs_of(*([[0.0, 0.9, 0.0, 0.0]] * 3), [0.5, 0.0, 0.0, 0.0])
    masks = torch.stack([box((0, 4), (0, 4)), box((5, 7), (5, 7)), box((5, 7), (0, 2)), box((0, 8), (0, 8))])
    got = freeseg_instances(probs, masks, thing_ids=(1,), overlap_threshold=0.0)
    assert_instances_match(got, freeseg_reference.instances(probs, masks, (1,), 0.0))
    assert got["pred_classes"].tolist() == [1, 1, 1], "three cars in query order, the stuff query left out"
    # a car whose own mask is half in the semantic map: kept above 0.49, not at 0.5 (strictly more, FreeSeg)
    half = torch.stack([box((0, 4), (0, 8)), box((2, 4), (0, 8))])
    probs = probs_of([0.0, 0.9, 0.0], [0.0, 0.0, 0.95])
    kept = [freeseg_instances(probs, half, (1,), t)["pred_classes"].tolist() for t in (0.49, 0.5)]
    assert kept == [[1], []]


# ------------------------------------------------------------------------------------------------------------ random
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("corrected", [False, True])
def test_random_cases_match_the_step_by_step_reading(freeseg_reference, seed, corrected):
    g = torch.Generator().manual_seed(seed)
    q, k = 12, 5
    probs = torch.rand(q, k, generator=g) ** 4  # peaked rows, as ensembled probabilities are
    coarse = torch.randn(q, 1, 4, 5, generator=g) * 6
    masks = torch.nn.functional.interpolate(coarse, size=(16, 20), mode="bilinear", align_corners=True)[:, 0]
    things = (1, 3)
    overlap = [0.0, 0.3, 0.5][seed % 3]
    assert_panoptic_matches(
        freeseg_panoptic(probs, masks, things, 4, overlap, corrected),
        freeseg_reference.panoptic(probs, masks, things, 4, overlap, corrected),
    )
    assert_instances_match(
        freeseg_instances(probs, masks, things, overlap, corrected),
        freeseg_reference.instances(probs, masks, things, overlap, corrected),
    )


# ------------------------------------------------------------------------------------------------------------ resize
@pytest.mark.parametrize(
    "size,new", [((37, 53), (64, 80)), ((64, 80), (37, 53)), ((50, 64), (70, 90)), ((9, 9), (9, 9))]
)
def test_nearest_resize_is_pils(freeseg_reference, size, new):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 200, size, generator=g, dtype=torch.int32)
    np.testing.assert_array_equal(resize_nearest(ids, new).numpy(), freeseg_reference.pil_nearest(ids.numpy(), new))
    masks = torch.rand(3, *size, generator=g) > 0.5
    resized = resize_instances({"pred_masks": masks, "scores": torch.ones(3)}, new)["pred_masks"]
    for mask, out in zip(masks, resized):
        np.testing.assert_array_equal(out.numpy(), freeseg_reference.pil_nearest(mask.numpy(), new).astype(bool))
