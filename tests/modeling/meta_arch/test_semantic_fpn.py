import pytest
import torch

from freemask.config import ConfigError, get_cfg
from freemask.modeling import build_model


def toy_cfg(**head):
    cfg = get_cfg()
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.BACKBONE.TIMM_NAME = "resnet18"
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 5
    cfg.MODEL.SEM_SEG_HEAD.CONVS_DIM = 32
    cfg.MODEL.SEM_SEG_HEAD.HEAD_DIM = 32
    cfg.INPUT.SIZE_DIVISIBILITY = 32
    for k, v in head.items():
        setattr(cfg.MODEL.SEM_SEG_HEAD, k, v)
    return cfg


def batch(n=2, size=(64, 64), label=None):
    out = []
    for _ in range(n):
        target = torch.randint(0, 5, size) if label is None else torch.full(size, label)
        out.append({"image": torch.randint(0, 255, (3, *size), dtype=torch.uint8), "sem_seg": target})
    return out


def test_training_returns_finite_loss_with_gradient_on_every_parameter():
    model = build_model(toy_cfg()).train()
    losses = model(batch())
    assert set(losses) == {"loss_sem_seg"} and torch.isfinite(losses["loss_sem_seg"])
    losses["loss_sem_seg"].backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing


def test_all_ignored_crop_gives_zero_loss_not_nan():
    model = build_model(toy_cfg()).train()
    loss = model(batch(label=255))["loss_sem_seg"]
    assert loss.item() == 0.0


def test_inference_returns_scores_at_original_resolution():
    model = build_model(toy_cfg()).eval()
    inputs = [
        {"image": torch.randint(0, 255, (3, 50, 70), dtype=torch.uint8), "height": 100, "width": 140},
        {"image": torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8), "height": 64, "width": 64},
    ]
    with torch.no_grad():
        outputs = model(inputs)
    assert outputs[0]["sem_seg"].shape == (5, 100, 140) and outputs[1]["sem_seg"].shape == (5, 64, 64)
    assert torch.allclose(outputs[0]["sem_seg"].sum(0), torch.ones(100, 140), atol=1e-4)


def test_unpadded_sizes_are_padded_to_divisibility_with_ignore():
    model = build_model(toy_cfg())
    images, targets = model._batch([torch.zeros(3, 40, 50)], [torch.zeros(40, 50, dtype=torch.long)])
    assert images.shape == (1, 3, 64, 64) and targets.shape == (1, 64, 64)
    assert (targets[0, 40:] == 255).all() and (targets[0, :, 50:] == 255).all() and (targets[0, :40, :50] == 0).all()


def test_unknown_meta_architecture_names_registered_ones():
    cfg = toy_cfg()
    cfg.MODEL.META_ARCHITECTURE = "MaskFormerr"
    with pytest.raises(ConfigError, match="SemanticFPN"):
        build_model(cfg)
