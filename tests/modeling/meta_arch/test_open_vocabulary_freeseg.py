"""The toy FreeSeg config runs FreeSeg's inference (bytedance/FreeSeg, mask2former/open_vocabulary_model.py,
``OpenVocabulary.forward``): mask logits upsampled to the padded batch with align_corners=True and cropped, every
output made at the input size, semantic scores resized bilinearly and panoptic / instance outputs by nearest
neighbour; the seen flags FreeSeg uses (every class unseen without a trainable_flag), logged; the demo and the
shipped FreeSeg configs pick the same post-processing."""

import logging
import pathlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from freemask.config import ConfigError, get_cfg
from freemask.data import MetadataCatalog
from freemask.engine.defaults import setup_cfg
from freemask.engine.demo import demo_classes, demo_postprocess, parse_vocabulary
from freemask.engine.evaluation import panel_model
from freemask.modeling import build_model
from freemask.modeling.open_vocab import TASK_NAMES, Vocabulary
from freemask.modeling.postprocess import UniversalPostprocess

SEMANTIC, INSTANCE, PANOPTIC = TASK_NAMES
TOY = pathlib.Path("configs", "toy", "open-vocabulary", "freeseg_R18_toy_alltask.yaml")
# toy_ov_val: 0 sky, 1 grass, 2 road (unseen), 3 building, 4 car (thing), 5 person (thing, unseen, the last class).
BOXES = [  # (class, rows, columns) of each query's mask on the decoder's (16, 24) grid
    (0, (0, 6), (0, 24)),
    (1, (10, 16), (0, 24)),
    (3, (4, 10), (0, 8)),
    (4, (6, 12), (10, 16)),
    (4, (7, 11), (11, 15)),
    (5, (6, 10), (17, 23)),
    (2, (12, 16), (0, 12)),
]


def _toy(repo_root):
    cfg = setup_cfg(str(repo_root / TOY), ["MODEL.DEVICE", "cpu"])
    torch.manual_seed(0)
    return cfg, build_model(cfg).eval()


def _batch():
    g = torch.Generator().manual_seed(3)
    return [  # padded together to (64, 96); original sizes other than the input ones, up and down
        {"image": torch.randint(0, 256, (3, 64, 80), dtype=torch.uint8, generator=g), "height": 48, "width": 61},
        {"image": torch.randint(0, 256, (3, 50, 64), dtype=torch.uint8, generator=g), "height": 70, "width": 90},
    ]


def _decoder_outputs(task, num_classes):
    """Hand-made decoder outputs for one task's pass: boxes with noisy edges, a confident class per query (its
    BOXES class, modulo a smaller vocabulary's size)."""
    g = torch.Generator().manual_seed(TASK_NAMES.index(task))
    logits = torch.zeros(2, len(BOXES), num_classes + 1)
    masks = torch.full((2, len(BOXES), 16, 24), -6.0)
    for q, (label, rows, cols) in enumerate(BOXES):
        logits[:, q, label % num_classes] = 8.0
        masks[:, q, rows[0] : rows[1], cols[0] : cols[1]] = 6.0
    masks += 2.0 * torch.randn(masks.shape, generator=g)
    logits += 0.5 * torch.randn(logits.shape, generator=g)
    return {"pred_logits": logits, "pred_masks": masks, "aux_outputs": []}


def _decode_hand_made(model, num_classes):
    """The model's decoder replaced by :func:`_decoder_outputs` of the task whose text features it was handed."""
    asked = {}
    text_features = model.text_features

    def recording(vocabulary, task):
        asked["task"] = task
        return text_features(vocabulary, task)

    model.text_features = recording
    model._head = lambda mask_features, multi_scale, text: _decoder_outputs(asked["task"], num_classes)


def _expected(model, batch, vocabulary, reference, overlap):
    """FreeSeg's forward step by step, from the same decoder outputs and the model's own CLIP ensemble."""
    expected = [{} for _ in batch]
    for task, key in ((SEMANTIC, "sem_seg"), (PANOPTIC, "panoptic_seg"), (INSTANCE, "instances")):
        text = model.text_features(vocabulary, task)
        outputs = _decoder_outputs(task, len(vocabulary))
        masks = F.interpolate(outputs["pred_masks"], size=(64, 96), mode="bilinear", align_corners=True)
        for result, mask_cls, mask, x in zip(expected, outputs["pred_logits"], masks, batch):
            h, w = x["image"].shape[-2:]
            size = (x["height"], x["width"])
            mask = mask[:, :h, :w]
            probs = model.class_probabilities(mask_cls, mask, x["image"], text[:-1], vocabulary)
            if key == "sem_seg":
                scores = torch.einsum("qc,qhw->chw", probs, mask.sigmoid())
                result[key] = F.interpolate(scores[None], size=size, mode="bilinear", align_corners=False)[0]
            elif key == "panoptic_seg":
                ids, info = reference.panoptic(probs, mask, vocabulary.thing_ids, len(model.vocabulary), overlap)
                ids = torch.from_numpy(reference.pil_nearest(ids.numpy(), size).astype(np.int32))
                result[key] = (ids, [s for s in info if s["id"] in set(ids.unique().tolist())])
            else:
                inst_masks, scores, classes = reference.instances(probs, mask, vocabulary.thing_ids, overlap)
                resized = [torch.from_numpy(reference.pil_nearest(m.numpy(), size).astype(bool)) for m in inst_masks]
                resized = torch.stack(resized) if resized else torch.zeros(0, *size, dtype=torch.bool)
                result[key] = (resized, scores, classes)
    return expected


def test_the_toy_freeseg_config_computes_freeseg_inference(repo_root, freeseg_reference):
    cfg, model = _toy(repo_root)
    vocabulary = Vocabulary.from_metadata(MetadataCatalog.get("toy_ov_val"))
    _decode_hand_made(model, len(vocabulary))
    with torch.no_grad():
        outputs = model(_batch(), vocabulary=vocabulary)
        overlap = cfg.MODEL.MASK_FORMER.TEST.OVERLAP_THRESHOLD
        expected = _expected(model, _batch(), vocabulary, freeseg_reference, overlap)
    for out, want in zip(outputs, expected):
        torch.testing.assert_close(out["sem_seg"], want["sem_seg"], atol=1e-5, rtol=1e-5)
        assert torch.equal(out["panoptic_seg"][0], want["panoptic_seg"][0])
        assert out["panoptic_seg"][1] == want["panoptic_seg"][1]
        masks, scores, classes = want["instances"]
        assert torch.equal(out["instances"]["pred_masks"], masks)
        assert torch.equal(out["instances"]["pred_classes"], classes)
        torch.testing.assert_close(out["instances"]["scores"], scores)
    # the case is not empty: segments of things and stuff, instances of cars
    segments = [s for out in outputs for s in out["panoptic_seg"][1]]
    assert {s["isthing"] for s in segments} == {True, False}
    assert sum(len(out["instances"]["pred_classes"]) for out in outputs) > 0
    # FreeSeg's released panoptic pass drops the label equal to the training class count: the car (4 of 4)
    assert 4 not in {s["category_id"] for s in segments} and 5 in {s["category_id"] for s in segments}


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def test_seen_flags_follow_freeseg_and_are_logged_once_per_vocabulary(repo_root):
    cfg, model = _toy(repo_root)
    _decode_hand_made(model, 4)
    lines = _Lines()
    logger = logging.getLogger("freemask.modeling.meta_arch.open_vocabulary")
    logger.addHandler(lines)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        with torch.no_grad():
            model(_batch()[:1])  # the training vocabulary: toy_ov_train_base has no trainable_flag
            model(_batch()[:1])
            _decode_hand_made(model, 6)
            model(_batch()[:1], vocabulary=Vocabulary.from_metadata(MetadataCatalog.get("toy_ov_val")))
    finally:
        logger.removeHandler(lines)
        logger.setLevel(level)
    assert model.vocabulary.seen == (False,) * 4, "no trainable_flag: every class unseen, as FreeSeg"
    assert lines.lines == [
        "OpenVocabulary: CLIP ensemble over 4 classes, 0 seen and 4 unseen (toy_ov_train_base has no trainable_flag: "
        "every class unseen, as FreeSeg)",
        "OpenVocabulary: CLIP ensemble over 6 classes, 4 seen and 2 unseen (the trainable_flag of toy_ov_val)",
    ]


def test_the_demo_and_the_shipped_freeseg_configs_pick_freeseg_inference(repo_root):
    cfg, model = _toy(repo_root)
    typed = parse_vocabulary("cat,traffic cone", cfg)
    assert typed.seen == (False, False) and "every class unseen" in typed.seen_source
    assert demo_postprocess(cfg, demo_classes(cfg, typed)).rule == "freeseg"
    assert demo_postprocess(cfg, demo_classes(cfg, None)).rule == "freeseg"
    assert panel_model(cfg, model).options["postprocess"].rule == "freeseg", "the TensorBoard panels"
    shipped = get_cfg()
    shipped.merge_from_file(str(repo_root / "configs" / "common" / "freeseg.yaml"))
    assert shipped.MODEL.MASK_FORMER.TEST.POSTPROCESS == "freeseg"
    assert shipped.MODEL.SEM_SEG_HEAD.INTERACTION_TEXT_NORM == "repeated"
    assert get_cfg().MODEL.MASK_FORMER.TEST.POSTPROCESS == "mask2former", "Mask2Former configs keep theirs"


def test_post_processing_choices_are_checked(repo_root):
    bad = setup_cfg(str(repo_root / TOY), ["MODEL.MASK_FORMER.TEST.POSTPROCESS", "freeseg_v2"])
    with pytest.raises(ConfigError, match="POSTPROCESS is 'freeseg_v2'; choose one of mask2former, freeseg"):
        UniversalPostprocess.from_config(bad, thing_ids=(1,))
    freeseg = UniversalPostprocess(panoptic_on=True, thing_ids=(1,), rule="freeseg")
    with pytest.raises(ConfigError, match="only META_ARCHITECTURE OpenVocabulary runs"):
        freeseg(torch.zeros(3, 3), torch.zeros(3, 4, 4))  # a Mask2Former model calls the post-processing itself
    text_norm = setup_cfg(str(repo_root / TOY), ["MODEL.SEM_SEG_HEAD.INTERACTION_TEXT_NORM", "twice"])
    with pytest.raises(ConfigError, match="INTERACTION_TEXT_NORM is 'twice'"):
        build_model(text_norm)
