"""Mask2Former post-processing on hand-built logits whose answer is known (facebookresearch/Mask2Former,
mask2former/maskformer_model.py, MaskFormer.semantic_inference / panoptic_inference / instance_inference)."""

import pytest
import torch

from freemask.config import ConfigError, get_cfg
from freemask.data.catalog import Metadata
from freemask.modeling.postprocess import (
    UniversalPostprocess,
    instance_inference,
    panoptic_inference,
    semantic_inference,
)

K = 3  # classes 0, 1 things; 2 stuff; logit 3 = no-object
THINGS = (0, 1)
BIG = 10.0  # mask logit: sigmoid ~ 1 inside, ~ 0 outside


def cls_logits(*rows):
    """(Q, K + 1) logits whose softmax puts ``p`` on class ``c`` and the rest evenly on the other K entries."""
    out = []
    for c, p in rows:
        probs = torch.full((K + 1,), (1 - p) / K)
        probs[c] = p
        out.append(probs.log())
    return torch.stack(out)


def box_mask(h, w, y0, y1, x0, x1, inside=BIG, outside=-BIG):
    m = torch.full((h, w), outside)
    m[y0:y1, x0:x1] = inside
    return m


def test_semantic_is_prob_weighted_sum_of_sigmoids():
    mask_cls = torch.randn(5, K + 1)
    mask_pred = torch.randn(5, 4, 6)
    expected = torch.zeros(K, 4, 6)
    probs = mask_cls.softmax(-1)
    for q in range(5):
        for c in range(K):
            expected[c] += probs[q, c] * mask_pred[q].sigmoid()
    assert torch.allclose(semantic_inference(mask_cls, mask_pred), expected, atol=1e-6)


def test_low_score_and_no_object_queries_are_dropped():
    mask_cls = cls_logits((0, 0.9), (1, 0.5), (K, 0.95))  # query 2 is most confidently no-object
    mask_pred = torch.stack([box_mask(8, 8, 0, 4, 0, 4), box_mask(8, 8, 4, 8, 4, 8), box_mask(8, 8, 0, 8, 0, 8)])
    pan, info = panoptic_inference(mask_cls, mask_pred, THINGS, object_mask_threshold=0.8)
    assert info == [{"id": 1, "isthing": True, "category_id": 0}]
    assert pan.dtype == torch.int32 and (pan[:4, :4] == 1).all()
    assert (pan[4:, :] == 0).all() and (pan[:, 4:] == 0).all()  # the dropped queries' pixels are void
    # without a threshold the class-1 query is kept, the no-object one still never is
    _, info = panoptic_inference(mask_cls, mask_pred, THINGS)
    assert [s["category_id"] for s in info] == [0, 1]


def test_overlap_goes_to_the_higher_prob_times_mask():
    # both cover the middle columns; query 1 is less probable but its mask is surer there
    mask_cls = cls_logits((0, 0.9), (1, 0.6))
    a = box_mask(4, 8, 0, 4, 0, 6, inside=1.0)  # sigmoid 0.73 -> 0.9 * 0.73 = 0.66
    b = box_mask(4, 8, 0, 4, 2, 8, inside=BIG)  # sigmoid 1.0 -> 0.6
    pan, info = panoptic_inference(mask_cls, torch.stack([a, b]), THINGS)
    assert [s["id"] for s in info] == [1, 2]
    assert (pan[:, 0:6] == 1).all() and (pan[:, 6:] == 2).all()  # 0.66 > 0.6: query 0 wins the overlap
    b2 = box_mask(4, 8, 0, 4, 2, 8, inside=BIG)
    mask_cls2 = cls_logits((0, 0.9), (1, 0.7))  # now 0.7 > 0.66: query 1 wins columns 2..5
    pan, _ = panoptic_inference(mask_cls2, torch.stack([a, b2]), THINGS)
    assert (pan[:, 0:2] == 1).all() and (pan[:, 2:] == 2).all()


def test_overlap_filter_removes_a_query_that_lost_most_of_its_pixels():
    mask_cls = cls_logits((0, 0.9), (1, 0.8))
    big = box_mask(8, 8, 0, 8, 0, 7)  # columns 0..6, wins wherever it is (0.9 > 0.8)
    small = box_mask(8, 8, 0, 8, 5, 8)  # own: columns 5..7 (24 px); wins only column 7 (8 px): 1/3 kept
    pan, info = panoptic_inference(mask_cls, torch.stack([big, small]), THINGS, overlap_threshold=0.5)
    assert [s["category_id"] for s in info] == [0]
    assert (pan[:, 7] == 0).all()  # its won pixels become void, not someone else's
    _, info = panoptic_inference(mask_cls, torch.stack([big, small]), THINGS, overlap_threshold=0.3)
    assert [s["category_id"] for s in info] == [0, 1]


def test_two_queries_of_one_stuff_class_merge_into_one_segment():
    mask_cls = cls_logits((2, 0.9), (0, 0.9), (2, 0.8))
    left = box_mask(4, 9, 0, 4, 0, 3)
    mid = box_mask(4, 9, 0, 4, 3, 6)
    right = box_mask(4, 9, 0, 4, 6, 9)
    pan, info = panoptic_inference(mask_cls, torch.stack([left, mid, right]), THINGS)
    assert info == [{"id": 1, "isthing": False, "category_id": 2}, {"id": 2, "isthing": True, "category_id": 0}]
    assert (pan[:, :3] == 1).all() and (pan[:, 3:6] == 2).all() and (pan[:, 6:] == 1).all()


def test_two_queries_of_one_thing_class_stay_two_segments():
    mask_cls = cls_logits((0, 0.9), (0, 0.9))
    pan, info = panoptic_inference(
        mask_cls, torch.stack([box_mask(2, 4, 0, 2, 0, 2), box_mask(2, 4, 0, 2, 2, 4)]), THINGS
    )
    assert [s["id"] for s in info] == [1, 2] and pan.unique().tolist() == [1, 2]


def test_no_kept_query_gives_an_all_void_map():
    pan, info = panoptic_inference(cls_logits((K, 0.9)), box_mask(3, 3, 0, 3, 0, 3)[None], THINGS)
    assert info == [] and pan.shape == (3, 3) and (pan == 0).all()


def test_instance_topk_over_query_class_pairs_can_pick_a_query_twice():
    # query 0 is split between classes 0 (0.5) and 1 (0.4); query 1 is class 2 at 0.3
    mask_cls = torch.stack([torch.tensor([0.5, 0.4, 0.05, 0.05]).log(), torch.tensor([0.1, 0.1, 0.3, 0.5]).log()])
    mask_pred = torch.stack([box_mask(4, 4, 0, 2, 0, 4), box_mask(4, 4, 2, 4, 0, 4)])
    out = instance_inference(mask_cls, mask_pred, topk=3)
    assert out["pred_classes"].tolist() == [0, 1, 2] and out["pred_classes"].dtype == torch.int64
    assert out["pred_masks"].dtype == torch.bool and out["pred_masks"].shape == (3, 4, 4)
    assert torch.equal(out["pred_masks"][0], out["pred_masks"][1]) and out["pred_masks"][0][:2].all()
    assert out["pred_masks"][2][2:].all() and not out["pred_masks"][2][:2].any()
    assert torch.allclose(out["scores"], torch.tensor([0.5, 0.4, 0.3]), atol=1e-3)


def test_instance_score_is_class_prob_times_mean_mask_prob():
    mask_cls = torch.tensor([[2.0, 0.0, 0.0, 0.0]])
    logits = torch.tensor([[[1.0, 3.0], [-1.0, -2.0]]])  # mask = top row; mean sigmoid there
    out = instance_inference(mask_cls, logits, topk=1)
    prob = mask_cls.softmax(-1)[0, 0]
    expected = prob * (torch.sigmoid(torch.tensor(1.0)) + torch.sigmoid(torch.tensor(3.0))) / 2
    assert torch.allclose(out["scores"], expected[None], atol=1e-5)
    assert out["pred_masks"][0].tolist() == [[True, True], [False, False]]


def test_instance_things_only_drops_stuff_labels_and_topk_is_capped():
    mask_cls = cls_logits((2, 0.9), (0, 0.6))
    mask_pred = torch.stack([box_mask(2, 2, 0, 2, 0, 2), box_mask(2, 2, 0, 1, 0, 2)])
    out = instance_inference(mask_cls, mask_pred, topk=100)  # 2 queries x 3 classes = 6 pairs at most
    assert len(out["scores"]) == 6 and out["pred_classes"][0] == 2
    out = instance_inference(mask_cls, mask_pred, topk=100, thing_ids=THINGS, things_only=True)
    assert len(out["scores"]) == 4 and set(out["pred_classes"].tolist()) == {0, 1}
    assert out["pred_classes"][0] == 0 and torch.equal(out["pred_masks"][0], mask_pred[1] > 0)


def test_universal_postprocess_from_config():
    cfg = get_cfg()
    assert (cfg.MODEL.MASK_FORMER.TEST.SEMANTIC_ON, cfg.MODEL.MASK_FORMER.TEST.INSTANCE_ON) == (True, False)
    assert cfg.MODEL.MASK_FORMER.TEST.PANOPTIC_ON is False and cfg.TEST.DETECTIONS_PER_IMAGE == 100
    meta = Metadata("toy_pan").set(thing_dataset_id_to_contiguous_id={3: 0, 7: 1})
    cfg.merge_from_list(["MODEL.MASK_FORMER.TEST.PANOPTIC_ON", "True", "MODEL.MASK_FORMER.TEST.INSTANCE_ON", "True"])
    cfg.merge_from_list(["MODEL.MASK_FORMER.TEST.OVERLAP_THRESHOLD", "0.8", "TEST.DETECTIONS_PER_IMAGE", "2"])
    post = UniversalPostprocess.from_config(cfg, meta)
    assert post.thing_ids == (0, 1) and post.overlap_threshold == 0.8 and post.detections_per_image == 2
    out = post(cls_logits((2, 0.9), (0, 0.9)), torch.stack([box_mask(2, 4, 0, 2, 0, 2), box_mask(2, 4, 0, 2, 2, 4)]))
    assert set(out) == {"sem_seg", "panoptic_seg", "instances"} and out["sem_seg"].shape == (K, 2, 4)
    assert set(out["instances"]["pred_classes"].tolist()) <= {0, 1}  # panoptic on -> things only
    with pytest.raises(ConfigError, match="thing_dataset_id_to_contiguous_id"):
        UniversalPostprocess.from_config(cfg, Metadata("no_things"))
