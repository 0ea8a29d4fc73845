"""SeMask Swin: stage and prior shapes for T/S/B/L, the published window plan, windowed vs global semantic attention,
ImageNet Swin weights loading with the semantic layers adding nothing at start, and gradients past the zero gate."""

import pytest
import timm
import torch
import torch.nn.functional as F

from freemask.config import ConfigError
from freemask.modeling.backbone.semask_swin import ALL_STAGES, SemanticLayer, SeMaskSwin, published_global_stages
from freemask.modeling.backbone.timm_backbone import TimmBackbone

# Swin sizes: (timm name, embed dim, Swin window).
VARIANTS = {
    "T": ("swin_tiny_patch4_window7_224", 96, 7),
    "S": ("swin_small_patch4_window7_224", 96, 7),
    "B": ("swin_base_patch4_window12_384", 128, 12),
    "L": ("swin_large_patch4_window12_384", 192, 12),
}
SMALL = (32, (1, 1, 2, 1), (1, 2, 4, 8))  # a small Swin, so real forwards stay cheap


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("num_classes", [150, 19])
def test_stage_and_prior_shapes_and_window_plan(variant, num_classes):
    name, dim, window = VARIANTS[variant]
    with torch.device("meta"):  # shapes only: no memory, no initialisation, no arithmetic
        model = SeMaskSwin(name, num_classes).eval()
        features, priors = model.forward_with_priors(torch.empty(2, 3, 512, 384))
    strides = [4, 8, 16, 32]
    assert [s.stride for s in model.output_shape().values()] == strides
    for i, (key, stride) in enumerate(zip(["res2", "res3", "res4", "res5"], strides)):
        size = (512 // stride, 384 // stride)
        assert features[key].shape == (2, dim * 2**i, *size) and model.output_shape()[key].channels == dim * 2**i
        assert priors[key].shape == (2, num_classes, *size)
    expected_global = variant in ("T", "S", "L") and num_classes > 19
    assert [layer.window_size for layer in model.semantic_layers] == (
        [window, window, 0, 0] if expected_global else [window] * 4
    )


def test_published_global_stages_rule():
    assert published_global_stages(96, 150) == (2, 3) and published_global_stages(192, 171) == (2, 3)
    assert published_global_stages(128, 150) == () and published_global_stages(96, 19) == ()


def test_bad_arguments_name_the_key():
    with pytest.raises(ConfigError, match="OUT_FEATURES"):
        SeMaskSwin("swin_tiny_patch4_window7_224", 6, out_features=("res5",), swin_size=SMALL)
    with pytest.raises(ConfigError, match="not a Swin"):
        SeMaskSwin("resnet18", 6)
    with pytest.raises(ConfigError, match="RESIDUAL"):
        SemanticLayer(32, 6, 4, residual="pre")


@pytest.mark.parametrize("window", [4, 0])
def test_semantic_attention_mixes_only_inside_a_window(window):
    torch.manual_seed(0)
    layer = SemanticLayer(16, 5, window).eval()
    with torch.no_grad():
        layer.attn.gamma.fill_(1.0)
    x = torch.randn(1, 8, 6, 16)  # 6 is not a multiple of 4: the last column of windows is padded
    y = x.clone()
    y[0, 0, 0] += 3 * torch.randn(16)  # a token of the top-left window (not a constant: LayerNorm removes that)
    (out_x, prior_x), (out_y, _) = layer(x), layer(y)
    assert prior_x.shape == (1, 5, 8, 6) and out_x.shape == x.shape
    changed = (out_x - out_y).abs().amax(dim=-1)[0] > 1e-6
    assert changed[:4, :4].all()  # same window: every token attends to the changed one
    if window:
        assert not changed[4:].any() and not changed[:, 4:].any()  # other windows untouched
    else:
        assert changed.all()  # global attention


def _imagenet_swin_file(tmp_path) -> str:
    """An ImageNet-style Swin checkpoint (the full timm model's state dict, classifier included) in a local file."""
    torch.manual_seed(1)
    reference = timm.create_model("swin_tiny_patch4_window7_224", embed_dim=32, depths=(1, 1, 2, 1),
                                  num_heads=(1, 2, 4, 8))  # fmt: skip
    path = str(tmp_path / "swin_small_imagenet.pth")
    torch.save({"model": reference.state_dict()}, path)
    return path


def test_imagenet_swin_loads_and_input_residual_gives_plain_swin_features(tmp_path):
    path = _imagenet_swin_file(tmp_path)
    plain = TimmBackbone("swin_tiny_patch4_window7_224", pretrained=path, swin_size=SMALL).eval()
    semask = SeMaskSwin("swin_tiny_patch4_window7_224", 150, pretrained=path, swin_size=SMALL, residual="input")
    semask.eval()
    file_state = torch.load(path)["model"]
    assert torch.equal(semask.body.layers_2.blocks[1].attn.qkv.weight, file_state["layers.2.blocks.1.attn.qkv.weight"])
    images = torch.randn(2, 3, 96, 128)
    with torch.no_grad():
        expected, (features, priors) = plain(images), semask.forward_with_priors(images)
    for key in expected:
        torch.testing.assert_close(features[key], expected[key], rtol=0, atol=0)
        assert priors[key].shape[1] == 150 and priors[key].abs().sum() > 0  # the priors are live from the start


def test_official_residual_hands_on_layer_normed_tokens_at_start(tmp_path):
    path = _imagenet_swin_file(tmp_path)
    semask = SeMaskSwin("swin_tiny_patch4_window7_224", 150, pretrained=path, swin_size=SMALL).eval()
    images = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        features = semask(images)
        x = semask.body.patch_embed(images)  # plain Swin with a parameter-free LayerNorm after every stage
        for i, key in enumerate(["res2", "res3", "res4", "res5"]):
            x = getattr(semask.body, f"layers_{i}")(x)
            x = F.layer_norm(x, x.shape[-1:])
            torch.testing.assert_close(features[key], semask.out_norms[key](x).permute(0, 3, 1, 2))


def test_gate_gets_a_gradient_at_start_and_every_parameter_once_open():
    torch.manual_seed(0)
    model = SeMaskSwin("swin_tiny_patch4_window7_224", 6, swin_size=SMALL).train()
    features, priors = model.forward_with_priors(torch.randn(2, 3, 64, 64))
    (sum(f.square().mean() for f in features.values()) + sum(p.mean() for p in priors.values())).backward()
    assert all(layer.attn.gamma.grad.abs().item() > 0 for layer in model.semantic_layers)  # not a dead gate
    model.zero_grad()
    with torch.no_grad():
        for layer in model.semantic_layers:
            layer.attn.gamma.fill_(0.5)
    features, priors = model.forward_with_priors(torch.randn(2, 3, 64, 64))
    (sum(f.square().mean() for f in features.values()) + sum(p.square().mean() for p in priors.values())).backward()
    assert not [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]


@pytest.mark.parametrize("size", [(512, 683), (203, 277), (256, 320)])
def test_runs_as_the_release_at_any_size(size, swin_features):
    """Features and priors equal, bit for bit, a forward in the release's order (``SeMaskSwinTransformer``: pad to 4
    at the patch embedding, per Swin and semantic window, at odd merges; stages 3-4 global at 150 classes), with the
    semantic gates open so the layers matter. Padding the image to 32 first would change every token."""
    torch.manual_seed(0)
    model = SeMaskSwin(VARIANTS["T"][0], 150, swin_size=(96, (2, 2, 2, 2), (3, 6, 12, 24))).eval()
    assert [layer.window_size for layer in model.semantic_layers] == [7, 7, 0, 0]
    for layer in model.semantic_layers:
        torch.nn.init.constant_(layer.attn.gamma, 0.7)
    images = torch.randn(1, 3, *size)
    with torch.no_grad():
        features, priors = model.forward_with_priors(images)
        ref_features, ref_priors = swin_features(model, images, model.semantic_layers)
    for name in ALL_STAGES:
        assert torch.equal(features[name], ref_features[name]) and torch.equal(priors[name], ref_priors[name]), name
