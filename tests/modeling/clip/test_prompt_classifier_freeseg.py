"""Stage 1 computes what FreeSeg's computes (bytedance/FreeSeg, mask2former/proposal_classification.py,
``ProposalClipClassifier.forward``), written out step by step here: normalise the crop, set the pixels outside the
mask to CLIP's mean in the normalised image, encode, 100 x cosine with the prompt's text features of the batch's
task (its first sample's, else the semantic one), cross-entropy."""

import pytest
import torch
import torch.nn.functional as F

from freemask.config import ConfigError, get_cfg
from freemask.data import MetadataCatalog
from freemask.modeling import build_model
from freemask.modeling.clip import TINY_CLIP_NAME

TRAIN, TEST = "_freeseg_stage1_train", "_freeseg_stage1_val"
MetadataCatalog.get(TRAIN).set(stuff_classes=["sky", "grass", "car"])
MetadataCatalog.get(TEST).set(stuff_classes=["sky", "grass", "person", "car"], trainable_flag=[1, 1, 0, 1])


def _model(tasks=("semantic segmentation.",)):
    cfg = get_cfg()
    cfg.MODEL.META_ARCHITECTURE = "ProposalClipClassifier"
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.CLIP_ADAPTER.CLIP_MODEL_NAME = TINY_CLIP_NAME
    cfg.MODEL.CLIP_ADAPTER.PROMPT_DIM = 64
    cfg.INPUT.TASK_NAME = list(tasks)
    cfg.DATASETS.TRAIN, cfg.DATASETS.TEST = [TRAIN], [TEST]
    torch.manual_seed(0)
    return build_model(cfg)


def _batch(size):
    generator = torch.Generator().manual_seed(3)
    batch = []
    for label in (0, 2):
        mask = torch.zeros(1, size, size, dtype=torch.bool)
        mask[0, 2 + label : size - 3, 1 : size // 2 + label] = True
        image = torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=generator)
        batch.append({"image": image, "instances": {"gt_masks": mask, "gt_classes": torch.tensor([label])}})
    return batch


def _freeseg_logits(model, batch, names, task="semantic segmentation."):
    clip = model.clip
    mean = torch.tensor(clip.pixel_mean).view(1, 3, 1, 1)
    std = torch.tensor(clip.pixel_std).view(1, 3, 1, 1)
    images = torch.stack([x["image"] for x in batch]).float()
    masks = torch.stack([x["instances"]["gt_masks"][0] for x in batch]).float()[:, None]
    images = (images / 255.0 - mean) / std  # FreeSeg: normalise first ...
    images = images * masks + (1 - masks) * mean  # ... then write CLIP's mean (0..1 values) outside the mask
    features = clip.encode_image(images)
    features = features / features.norm(dim=-1, keepdim=True)
    text = model.prompt_learner(names, task)
    return 100 * features @ text.t()


def test_evaluation_logits_are_freesegs():
    model = _model().eval()
    batch = _batch(model.clip.image_size)  # the mapper's crops are CLIP's input size: no resize
    with torch.no_grad():
        outputs = model(batch)
        expected = _freeseg_logits(model, batch, ["sky", "grass", "person", "car"])
    torch.testing.assert_close(torch.stack([o["classification"] for o in outputs]), expected, atol=1e-4, rtol=1e-4)


def test_training_loss_is_freesegs_cross_entropy():
    model = _model().train()
    batch = _batch(model.clip.image_size)
    loss = model(batch)["loss_cls"]
    with torch.no_grad():
        expected = F.cross_entropy(_freeseg_logits(model, batch, ["sky", "grass", "car"]), torch.tensor([0, 2]))
    torch.testing.assert_close(loss.detach(), expected, atol=1e-4, rtol=1e-4)


def test_the_fill_is_the_mean_in_the_normalised_image():
    """Outside the mask the crop holds CLIP's mean itself (about 0.48), not the mean colour (0 once normalised)."""
    model = _model()
    batch = _batch(model.clip.image_size)
    crops = model.masked_crops(batch)
    outside = ~batch[0]["instances"]["gt_masks"][0]
    for channel, value in enumerate(model.clip.pixel_mean):
        assert torch.allclose(crops[0, channel][outside], torch.tensor(value))


def test_the_batch_takes_its_first_samples_task():
    """FreeSeg's COCO full-task records name their task; the batch uses the first one's, others the semantic one."""
    tasks = ("semantic segmentation.", "instance segmentation.", "panoptic segmentation.")
    model = _model(tasks).train()
    batch = _batch(model.clip.image_size)
    batch[0]["task"], batch[1]["task"] = "pan_seg", "ins_seg"
    loss = model(batch)["loss_cls"]
    with torch.no_grad():
        logits = _freeseg_logits(model, batch, ["sky", "grass", "car"], "panoptic segmentation.")
        semantic = _freeseg_logits(model, batch, ["sky", "grass", "car"])
    torch.testing.assert_close(loss.detach(), F.cross_entropy(logits, torch.tensor([0, 2])), atol=1e-4, rtol=1e-4)
    assert not torch.allclose(logits, semantic)  # the task prompt matters
    for sample in batch:
        del sample["task"]
    model.eval()
    with torch.no_grad():
        outputs = torch.stack([o["classification"] for o in model(batch)])
        expected = _freeseg_logits(model, batch, ["sky", "grass", "person", "car"])
    torch.testing.assert_close(outputs, expected, atol=1e-4, rtol=1e-4)
    batch[0]["task"] = "ins_seg"
    with pytest.raises(ConfigError, match="INPUT.TASK_NAME"):
        _model().train()(batch)  # only the semantic task configured
