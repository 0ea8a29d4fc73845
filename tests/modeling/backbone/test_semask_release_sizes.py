"""SeMask-FPN's whole-image test path at sizes that are not multiples of 32 gives the release's output.

The release (SeMask-FPN, MMSegmentation 0.x ``whole_inference``) runs the resized test image unpadded: its pipeline
has no Pad step, its Swin pads only to the patch size, per window and at odd merges, ``BranchFPNHead`` resizes each
scale head to the stride-4 map, and the logits are resized to the image. The reference below is that, written in the
release's order (``swin_release_order``) around the model's own head; the model runs through the shipped ADE20K
config's inference settings (SegmentationInference.from_config), so a config that pads the image to 32 fails here.
"""

import pytest
import torch
import torch.nn.functional as F

from freemask.config import get_cfg
from freemask.modeling import build_model
from freemask.modeling.inference import SegmentationInference

CONFIG = "configs/ade20k/semantic-segmentation/semask/semask_fpn_swin_tiny_bs16_80k.yaml"
SMALL_SWIN_T = [  # Swin-T widths (so the published rule makes stages 3-4 global at 150 classes), shallower
    "MODEL.BACKBONE.SWIN_SIZE", "[96, [2, 2, 2, 2], [3, 6, 12, 24]]", "MODEL.BACKBONE.PRETRAINED", "",
    "MODEL.SEM_SEG_HEAD.CONVS_DIM", "32", "MODEL.SEM_SEG_HEAD.NORM", "BN", "MODEL.DEVICE", "cpu",
]  # fmt: skip


@pytest.fixture(scope="module")
def shipped(request):
    cfg = get_cfg()
    cfg.merge_from_file(str(request.config.rootpath / CONFIG))
    cfg.merge_from_list(SMALL_SWIN_T)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    assert [layer.window_size for layer in model.backbone.semantic_layers] == [7, 7, 0, 0]
    for layer in model.backbone.semantic_layers:  # open the gates (0 at initialisation) so the priors steer
        torch.nn.init.constant_(layer.attn.gamma, 0.7)
    torch.nn.init.normal_(model.sem_seg_head.conv_seg.weight, std=0.5)
    return cfg, model


def release_scores(swin_features, model, images: torch.Tensor) -> torch.Tensor:
    features, _ = swin_features(model.backbone, images, model.backbone.semantic_layers)
    logits, _ = model.sem_seg_head(features)
    return F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False).softmax(1)


@pytest.mark.parametrize("size", [(512, 683), (203, 277)])
def test_whole_image_path_equals_the_release_at_any_size(shipped, size, swin_features):
    cfg, model = shipped
    torch.manual_seed(1)
    images = torch.randn(1, 3, *size)
    with torch.no_grad():
        ours = SegmentationInference.from_config(cfg)(model.predict, images, size)
        reference = release_scores(swin_features, model, images)[0]
    assert ours.shape == reference.shape == (150, *size)
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-6)
    assert torch.equal(ours.argmax(0), reference.argmax(0))
