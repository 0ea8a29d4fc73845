"""MaskFormer's evaluation outputs: semantic-only stays the base class's path, panoptic / instance come from one
decoder pass with the masks resized before post-processing (Mask2Former's ``sem_seg_postprocess``)."""

import pytest
import torch
import torch.nn.functional as F

from freemask.config import get_cfg
from freemask.modeling import build_model
from freemask.modeling.meta_arch.base import SemanticSegmentor
from freemask.modeling.postprocess import (
    UniversalPostprocess,
    instance_inference,
    panoptic_inference,
    semantic_inference,
)

THINGS = {1: 0, 3: 2}  # dataset id -> contiguous id of the thing classes


def _cfg(repo_root, *opts):
    cfg = get_cfg()
    cfg.merge_from_file(str(repo_root / "configs" / "toy" / "semantic-segmentation" / "mask2former_R18_toy.yaml"))
    cfg.merge_from_list(list(opts))
    return cfg


def _model(cfg):
    torch.manual_seed(0)
    return build_model(cfg).eval()


def _batch():
    g = torch.Generator().manual_seed(1)
    return [
        {"image": torch.randint(0, 256, (3, 100, 130), dtype=torch.uint8, generator=g), "height": 70, "width": 91},
        {"image": torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8, generator=g), "height": 64, "width": 64},
    ]


def test_semantic_only_postprocess_is_the_base_class_path(repo_root):
    cfg = _cfg(repo_root)
    model, batch = _model(cfg), _batch()
    semantic_only = UniversalPostprocess.from_config(cfg)
    with torch.no_grad():
        plain = model(batch)
        with_pp = model(batch, postprocess=semantic_only)
        base = SemanticSegmentor.forward(model, batch)
    for a, b, c in zip(plain, with_pp, base):
        assert set(a) == set(b) == {"sem_seg"}
        assert torch.equal(a["sem_seg"], b["sem_seg"]) and torch.equal(a["sem_seg"], c["sem_seg"])


def test_panoptic_and_instance_outputs_follow_sem_seg_postprocess(repo_root):
    on = ["MODEL.MASK_FORMER.TEST.PANOPTIC_ON", True, "MODEL.MASK_FORMER.TEST.INSTANCE_ON", True]
    cfg = _cfg(repo_root, *on, "MODEL.MASK_FORMER.TEST.OVERLAP_THRESHOLD", 0.8, "TEST.DETECTIONS_PER_IMAGE", 7)
    model, batch = _model(cfg), _batch()
    postprocess = UniversalPostprocess.from_config(cfg, {"thing_dataset_id_to_contiguous_id": THINGS})
    calls = []
    decode = model._decode
    model._decode = lambda images: calls.append(images.shape) or decode(images)
    with torch.no_grad():
        outputs = model(batch, postprocess=postprocess)
        assert calls == [(2, 3, 128, 160)], "one decoder pass, the batch padded to TEST.SIZE_DIVISIBILITY (32)"
        decoded = decode(
            torch.stack(
                [
                    F.pad(model._normalize(x["image"]), (0, 160 - x["image"].shape[-1], 0, 128 - x["image"].shape[-2]))
                    for x in batch
                ]
            )
        )
    for i, (x, out) in enumerate(zip(batch, outputs)):
        assert set(out) == {"sem_seg", "panoptic_seg", "instances"}
        h, w = x["image"].shape[-2:]
        masks = F.interpolate(
            decoded["pred_masks"][i : i + 1].float(), size=(128, 160), mode="bilinear", align_corners=False
        )[0, :, :h, :w]
        masks = F.interpolate(masks[None], size=(x["height"], x["width"]), mode="bilinear", align_corners=False)[0]
        cls = decoded["pred_logits"][i]
        assert torch.equal(out["sem_seg"], semantic_inference(cls, masks))
        assert out["sem_seg"].shape == (6, x["height"], x["width"])
        seg, info = out["panoptic_seg"]
        ref_seg, ref_info = panoptic_inference(cls, masks, THINGS.values(), 0.0, 0.8)
        assert seg.dtype == torch.int32 and seg.shape == (x["height"], x["width"])
        assert torch.equal(seg, ref_seg) and info == ref_info
        assert all(s["isthing"] == (s["category_id"] in THINGS.values()) for s in info)
        instances = out["instances"]
        ref = instance_inference(cls, masks, 7, THINGS.values(), things_only=True)
        assert instances["pred_masks"].shape[1:] == (x["height"], x["width"])
        assert set(instances["pred_classes"].tolist()) <= set(THINGS.values()), "panoptic on: things only"
        for key in ("pred_masks", "scores", "pred_classes"):
            assert torch.equal(instances[key], ref[key])


def test_instance_only_gives_only_instances(repo_root):
    cfg = _cfg(repo_root, "MODEL.MASK_FORMER.TEST.SEMANTIC_ON", False, "MODEL.MASK_FORMER.TEST.INSTANCE_ON", True)
    postprocess = UniversalPostprocess.from_config(cfg, {"thing_dataset_id_to_contiguous_id": THINGS})
    with torch.no_grad():
        outputs = _model(cfg)(_batch()[:1], postprocess=postprocess)
    assert set(outputs[0]) == {"instances"}
    assert outputs[0]["instances"]["scores"].shape == (100,), "20 queries x 6 classes, top TEST.DETECTIONS_PER_IMAGE"
    assert outputs[0]["instances"]["pred_masks"].shape[1:] == (70, 91)


def test_sliding_window_is_refused_with_the_key_to_change(repo_root):
    cfg = _cfg(repo_root, "MODEL.MASK_FORMER.TEST.PANOPTIC_ON", True, "TEST.SLIDING_WINDOW.ENABLED", True)
    postprocess = UniversalPostprocess.from_config(cfg, {"thing_dataset_id_to_contiguous_id": THINGS})
    with pytest.raises(ValueError, match="TEST.SLIDING_WINDOW.ENABLED"):
        _model(cfg)(_batch(), postprocess=postprocess)
