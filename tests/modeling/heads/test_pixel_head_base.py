"""The per-pixel heads share one base (PixelHead): its loss arguments, classifier, losses() and forward()."""

import pytest
import torch
import torch.nn.functional as F

from freemask.config import CfgNode, get_cfg
from freemask.modeling import SEM_SEG_HEADS_REGISTRY
from freemask.modeling.backbone.base import ShapeSpec
from freemask.modeling.build import fill_head_keys
from freemask.modeling.heads.base import PixelHead
from freemask.modeling.heads.segformer_head import SegFormerHead
from freemask.modeling.heads.segmenter_head import SegmenterLinearHead, SegmenterMaskTransformerHead
from freemask.modeling.heads.semantic_fpn_head import SemanticFPNHead
from freemask.modeling.heads.semask_fpn_head import SeMaskFPNHead

PYRAMID = {f"res{i + 2}": ShapeSpec(c, 4 * 2**i) for i, c in enumerate((16, 24, 32, 40))}
TOKENS = {"res4": ShapeSpec(24, 16)}
K = 5


def _pyramid_head(cls, **kwargs):
    return cls(PYRAMID, num_classes=K, in_features=list(PYRAMID), **kwargs)


def _token_head(cls, **kwargs):
    return cls(TOKENS, num_classes=K, in_features=["res4"], **kwargs)


HEADS = {
    "SegFormerHead": lambda **kw: _pyramid_head(SegFormerHead, embed_dim=16, **kw),
    "SemanticFPNHead": lambda **kw: _pyramid_head(SemanticFPNHead, conv_dims=32, head_dims=32, **kw),
    "SeMaskFPNHead": lambda **kw: _pyramid_head(SeMaskFPNHead, channels=16, norm="BN", **kw),
    "SegmenterLinearHead": lambda **kw: _token_head(SegmenterLinearHead, **kw),
    "SegmenterMaskTransformerHead": lambda **kw: _token_head(SegmenterMaskTransformerHead, d_model=32, **kw),
}


def _features(head, size=32):
    shapes = PYRAMID if isinstance(head, (SegFormerHead, SemanticFPNHead, SeMaskFPNHead)) else TOKENS
    g = torch.Generator().manual_seed(0)
    return {k: torch.randn(2, s.channels, size // s.stride, size // s.stride, generator=g) for k, s in shapes.items()}


def _losses(head, logits, targets):
    """SeMask's losses() takes (logits, prior logits); without priors only the main loss remains."""
    return head.losses((logits, None) if isinstance(head, SeMaskFPNHead) else logits, targets)


def _logits(head, features):
    out = head(features)
    return out[0] if isinstance(out, tuple) else out


def _hand_cross_entropy(logits, targets, ignore, avg_non_ignore):
    """-log softmax at each labelled pixel of the bilinearly resized logits, summed, over the chosen pixel count."""
    resized = F.interpolate(logits, size=targets.shape[-2:], mode="bilinear", align_corners=False)
    log_p = resized.log_softmax(dim=1).permute(0, 2, 3, 1).reshape(-1, logits.shape[1])
    labels = targets.reshape(-1)
    labelled = labels != ignore
    total = -log_p[labelled].gather(1, labels[labelled, None]).sum()
    return total / (labelled.sum() if avg_non_ignore else labels.numel())


@pytest.mark.parametrize("avg_non_ignore", [False, True])
@pytest.mark.parametrize("name", sorted(HEADS))
def test_each_head_has_the_base_loss_cross_entropy_with_ignore_and_weight(name, avg_non_ignore):
    head = HEADS[name](loss_weight=0.25, ignore_label=7, loss_avg_non_ignore=avg_non_ignore).eval()
    assert isinstance(head, PixelHead)
    logits = _logits(head, _features(head))
    targets = torch.randint(0, K, (2, 32, 32), generator=torch.Generator().manual_seed(1))
    targets[:, :12] = 7  # 3/8 of the pixels unlabelled: the two averages differ
    loss = _losses(head, logits, targets)
    assert set(loss) == {"loss_sem_seg"}
    expected = 0.25 * _hand_cross_entropy(logits.detach(), targets, 7, avg_non_ignore)
    torch.testing.assert_close(loss["loss_sem_seg"].detach(), expected)


@pytest.mark.parametrize("name", sorted(HEADS))
def test_each_head_takes_its_loss_and_forward_from_the_base(name, monkeypatch):
    """One change to PixelHead's cross-entropy and layers reaches every head: none keeps a copy of its own."""
    head = HEADS[name](loss_weight=3.0).eval()
    logits = _logits(head, _features(head))
    monkeypatch.setattr(PixelHead, "cross_entropy", lambda self, *args: torch.tensor(2.0))
    assert _losses(head, logits, torch.zeros(2, 32, 32, dtype=torch.long))["loss_sem_seg"].item() == 6.0
    monkeypatch.setattr(type(head), "layers", lambda self, features, *args: "from layers")
    assert head(_features(head)) == "from layers"


@pytest.mark.parametrize("name", ["SegFormerHead", "SemanticFPNHead", "SeMaskFPNHead", "SegmenterLinearHead"])
def test_the_classifier_is_the_base_dropout_then_1x1_conv_under_the_checkpoint_name(name):
    head = HEADS[name](dropout=0.5) if name != "SegmenterLinearHead" else HEADS[name]()
    expected_name = "predictor" if name == "SemanticFPNHead" else "conv_seg"
    assert head.classifier is getattr(head, expected_name) and head.classifier.out_channels == K
    assert {f"{expected_name}.weight", f"{expected_name}.bias"} <= set(head.state_dict())
    x = torch.randn(1, head.classifier.in_channels, 4, 4)
    head.eval()
    torch.testing.assert_close(head.classify(x), head.classifier(x))
    head.train()
    if name != "SegmenterLinearHead":  # dropout 0.5 drops whole channels in training
        assert not torch.allclose(head.classify(x), head.classifier(x))


# The config node each head owns besides MODEL.SEM_SEG_HEAD.
OWN_KEYS = {
    "SegFormerHead": "SEGFORMER",
    "SemanticFPNHead": None,
    "SeMaskFPNHead": "SEMASK",
    "SegmenterLinearHead": "SEGMENTER",
    "SegmenterMaskTransformerHead": "SEGMENTER",
}


@pytest.mark.parametrize("name", sorted(HEADS))
def test_from_config_reads_only_the_head_keys_once_the_builder_filled_them(name):
    """A tree of MODEL.SEM_SEG_HEAD and the head's own node alone: reading e.g. MODEL.BACKBONE fails here. SegFormer's
    decoder width 0 ("as the encoder says") is filled by fill_head_keys, beside the backbone's cross-links."""
    cfg = get_cfg()
    cfg.MODEL.BACKBONE.MIT.VARIANT = "b1"
    filled = fill_head_keys(cfg)
    assert filled.MODEL.SEGFORMER.DECODER_DIM == 256 and cfg.MODEL.SEGFORMER.DECODER_DIM == 0
    tree = {"SEM_SEG_HEAD": filled.MODEL.SEM_SEG_HEAD.clone()}
    if OWN_KEYS[name]:
        tree[OWN_KEYS[name]] = filled.MODEL[OWN_KEYS[name]].clone()
    only_head = CfgNode({"MODEL": tree})
    shapes = TOKENS if name.startswith("Segmenter") else PYRAMID
    only_head.MODEL.SEM_SEG_HEAD.IN_FEATURES = list(shapes)
    args = SEM_SEG_HEADS_REGISTRY.get(name).from_config(only_head, shapes)
    assert args["num_classes"] == cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES
    if name == "SegFormerHead":
        assert args["embed_dim"] == 256
