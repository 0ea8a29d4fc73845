"""No host syncs on the pixel decoder's path: level sizes travel as Python ints (issue 16 item 3, issue 17 item 5).

On a GPU, every tensor value read back by Python (``.tolist()``, ``.item()``, ``int(t)``, ``bool(t)``, ...) waits for
the stream; before the change the decoder did 13 such reads per forward (two per encoder layer and one for the
reference points). On the CPU the same reads are counted through a ``TorchFunctionMode``, which sees every tensor
method called from Python, so the count is exact without a GPU; the GPU test runs the forward under
``torch.cuda.set_sync_debug_mode("error")``, which also catches syncs made inside C++ (blocking copies).
"""

import pytest
import torch
from torch.overrides import TorchFunctionMode

from freemask.modeling.backbone.base import ShapeSpec
from freemask.modeling.ops import MSDeformAttn, deform_attn, deform_attn_pytorch, ms_deform_attn_pytorch
from freemask.modeling.ops import ms_deform_attn_cuda as loader
from freemask.modeling.pixel_decoder import MSDeformAttnPixelDecoder

# Tensor calls that hand a value to Python or wait for the device to know a size: each is a host sync on CUDA.
HOST_READS = frozenset(
    {
        "tolist",
        "item",
        "__bool__",
        "__int__",
        "__float__",
        "__index__",
        "numpy",
        "cpu",
        "equal",
        "allclose",
        "nonzero",
        "argwhere",
        "unique",
        "masked_select",
    }
)
FEATURES = {"res2": ShapeSpec(8, 4), "res3": ShapeSpec(12, 8), "res4": ShapeSpec(16, 16), "res5": ShapeSpec(20, 32)}


class HostReadCounter(TorchFunctionMode):
    """Records the name of every :data:`HOST_READS` call made on a tensor while the mode is active."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in HOST_READS:
            self.calls.append(name)
        return func(*args, **(kwargs or {}))


def tiny_decoder(device: str = "cpu") -> MSDeformAttnPixelDecoder:
    torch.manual_seed(0)
    decoder = MSDeformAttnPixelDecoder(
        FEATURES,
        conv_dim=32,
        mask_dim=16,
        transformer_enc_layers=2,
        transformer_nheads=4,
        transformer_dim_feedforward=32,
    )
    with torch.no_grad():  # trained-like offsets, so points spread over cells instead of sitting on their edges
        for layer in decoder.transformer.encoder.layers:
            layer.self_attn.sampling_offsets.weight.normal_(0, 0.05)
    return decoder.to(device).eval()


def features(device: str = "cpu", size: tuple[int, int] = (64, 96)) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {
        name: torch.randn(2, s.channels, size[0] // s.stride, size[1] // s.stride, generator=g).to(device)
        for name, s in FEATURES.items()
    }


def tensors_only(monkeypatch) -> None:
    """Route ``MSDeformAttn`` through the official signature alone: the op reads the level tensors back."""
    original = deform_attn.ms_deform_attn

    def without_level_shapes(*args, level_shapes=None):
        return original(*args)

    monkeypatch.setattr(deform_attn, "ms_deform_attn", without_level_shapes)


def test_counter_sees_every_kind_of_host_read():
    t = torch.tensor([2, 3])
    with HostReadCounter() as counter:
        t.tolist()
        t[0].item()
        int(t[0])
        bool(t[0])
        float(t[0])
        range(t[1])
        t.nonzero()
    assert counter.calls == ["tolist", "item", "__int__", "__bool__", "__float__", "__index__", "nonzero"]


def test_pixel_decoder_forward_reads_no_tensor_back():
    decoder, feats = tiny_decoder(), features()
    with torch.no_grad(), HostReadCounter() as counter:
        mask_features, _, multi_scale = decoder(feats)
    assert counter.calls == []
    assert mask_features.shape == (2, 16, 16, 24) and [m.shape[-1] for m in multi_scale] == [3, 6, 12]


def test_the_count_catches_the_tensor_only_path(monkeypatch):
    """What the test above would see if a layer read the sizes back again: two ``tolist`` per encoder layer."""
    decoder, feats = tiny_decoder(), features()
    tensors_only(monkeypatch)
    with torch.no_grad(), HostReadCounter() as counter:
        decoder(feats)
    assert counter.calls == ["tolist"] * 4


def test_outputs_are_identical_to_the_tensor_only_path(monkeypatch):
    decoder, feats = tiny_decoder(), features()
    with torch.no_grad():
        fast = decoder(feats)
        tensors_only(monkeypatch)
        official = decoder(feats)
    assert torch.equal(fast[0], official[0]) and torch.equal(fast[1], official[1])
    assert all(torch.equal(a, b) for a, b in zip(fast[2], official[2]))


def test_op_with_level_shapes_equals_the_tensor_path_and_reads_nothing():
    g = torch.Generator().manual_seed(0)
    shapes = [(5, 7), (3, 4), (2, 2)]
    spatial, starts = deform_attn_pytorch.level_tensors(shapes, torch.device("cpu"))
    value = torch.randn(2, 51, 2, 3, generator=g, dtype=torch.float64)
    loc = torch.rand(2, 4, 2, 3, 2, 2, generator=g, dtype=torch.float64) * 1.6 - 0.3
    weights = torch.rand(2, 4, 2, 3, 2, generator=g, dtype=torch.float64)
    with HostReadCounter() as counter:
        fast = ms_deform_attn_pytorch(value, spatial, starts, loc, weights, level_shapes=shapes)
    assert counter.calls == []
    assert torch.equal(fast, ms_deform_attn_pytorch(value, spatial, starts, loc, weights))
    assert spatial.tolist() == [list(s) for s in shapes] and starts.tolist() == [0, 35, 47]


@pytest.mark.parametrize(
    "shapes, message",
    [
        ([(5, 7), (3, 4)], "name 2 levels but spatial_shapes has 3"),
        ([(5, 7), (3, 4), (2, 3)], "sum to 53"),
        ([(5, 7), (3, 4), (0, 4)], "level 2 is empty"),
    ],
)
def test_wrong_level_shapes_are_rejected_without_a_read(shapes, message):
    module = MSDeformAttn(d_model=8, n_levels=3, n_heads=2, n_points=1)
    spatial, starts = deform_attn_pytorch.level_tensors([(5, 7), (3, 4), (2, 2)], torch.device("cpu"))
    query, ref, feats = torch.randn(1, 4, 8), torch.rand(1, 4, 3, 2), torch.randn(1, 51, 8)
    with HostReadCounter() as counter, pytest.raises(ValueError, match=message):
        module(query, ref, feats, spatial, starts, level_shapes=shapes)
    assert counter.calls == []


def test_compiled_wrapper_gets_the_sizes_without_reading_the_tensors():
    """The compiled op's wrapper takes its launch parameters from ``level_shapes`` when given."""
    launches = []

    class FakeExtension:
        @staticmethod
        def forward(value, loc, weights, shapes, starts, kernel):
            launches.append((shapes, starts))
            return value.new_zeros(value.shape[0], loc.shape[1], value.shape[2] * value.shape[3])

    shapes = [(5, 7), (3, 4), (2, 2)]
    spatial, starts = deform_attn_pytorch.level_tensors(shapes, torch.device("cpu"))
    value, loc, weights = torch.randn(1, 51, 2, 3), torch.rand(1, 4, 2, 3, 2, 2), torch.rand(1, 4, 2, 3, 2)
    with HostReadCounter() as counter:
        loader.compiled_fn(FakeExtension)(value, spatial, starts, loc, weights, level_shapes=shapes)
    assert counter.calls == [] and launches == [([5, 7, 3, 4, 2, 2], [0, 35, 47])]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: set_sync_debug_mode only watches CUDA")
@pytest.mark.parametrize("impl", ["pytorch", "auto"])
def test_pixel_decoder_forward_has_no_cuda_sync(impl, monkeypatch):
    """``auto`` runs the compiled op when it is built (else the PyTorch path again); each is checked for syncs."""
    monkeypatch.setenv(loader.IMPL_ENV, impl)
    decoder, feats = tiny_decoder("cuda"), features("cuda")
    with torch.no_grad():
        decoder(feats)  # first use: library handles and the extension load, outside the check
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            mask_features, _, _ = decoder(feats)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert mask_features.is_cuda and torch.isfinite(mask_features).all()
