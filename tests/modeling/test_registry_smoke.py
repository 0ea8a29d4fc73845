"""Every entry of every model registry builds from a minimal config and runs a training and a test forward on CPU.

One test id per entry (``BACKBONE/ViTBackbone`` ...), so a newly registered class without a row in ``MINIMAL`` fails
the suite until it gets one. Each row is the smallest config whose model contains that entry (a toy config with
its sizes shrunk); the test checks that the built model really holds an instance of the registered class, not just
that some model was built.
"""

import pytest
import torch

from freemask.config import get_cfg
from freemask.data import DatasetCatalog, MetadataCatalog
from freemask.modeling import (
    BACKBONE_REGISTRY,
    META_ARCH_REGISTRY,
    PIXEL_DECODER_REGISTRY,
    SEM_SEG_HEADS_REGISTRY,
    TRANSFORMER_DECODER_REGISTRY,
    build_model,
)
from freemask.modeling.clip import TINY_CLIP_NAME

REGISTRIES = {
    "META_ARCH": META_ARCH_REGISTRY,
    "BACKBONE": BACKBONE_REGISTRY,
    "SEM_SEG_HEADS": SEM_SEG_HEADS_REGISTRY,
    "PIXEL_DECODER": PIXEL_DECODER_REGISTRY,
    "TRANSFORMER_DECODER": TRANSFORMER_DECODER_REGISTRY,
}
SIZE = 64  # image side
CLASSES = 3
VOCABULARY = "test_registry_smoke_vocabulary"  # registered below: the open-vocabulary models read their classes

# The minimal models: a toy config and what shrinks it further (GroupNorm widths stay multiples of 32).
FPN = (
    "semantic-segmentation/semantic_fpn_R18_toy.yaml",
    ["MODEL.SEM_SEG_HEAD.CONVS_DIM", "32", "MODEL.SEM_SEG_HEAD.HEAD_DIM", "32"],
)
SEGFORMER = ("semantic-segmentation/segformer_mit_b0_toy.yaml", ["MODEL.SEGFORMER.DECODER_DIM", "16"])
SEGMENTER = ("semantic-segmentation/segmenter_vit_tiny_toy.yaml", ["INPUT.CROP.SIZE", f"[{SIZE}, {SIZE}]"])
SEMASK = ("semantic-segmentation/semask_swin_tiny_toy.yaml", ["MODEL.SEM_SEG_HEAD.CONVS_DIM", "16"])
MASK2FORMER = ("semantic-segmentation/mask2former_R18_toy.yaml", [
    "MODEL.MASK_FORMER.DEC_LAYERS", "1", "MODEL.MASK_FORMER.TRAIN_NUM_POINTS", "64"
])  # fmt: skip
TINY_CLIP = [
    "MODEL.CLIP_ADAPTER.CLIP_MODEL_NAME", TINY_CLIP_NAME, "MODEL.CLIP_ADAPTER.PROMPT_DIM", "64",
    "MODEL.CLIP_ADAPTER.REGION_SIZE", "64", "DATASETS.TRAIN", f"('{VOCABULARY}',)", "DATASETS.TEST", "()",
]  # fmt: skip
OPEN_VOCABULARY = (
    MASK2FORMER[0],
    MASK2FORMER[1] + TINY_CLIP + [
        "MODEL.META_ARCHITECTURE", "OpenVocabulary", "MODEL.SEM_SEG_HEAD.EMBEDDING_DIM", "64",
        "MODEL.SEM_SEG_HEAD.EMBED_HIDDEN_DIM", "64", "MODEL.SEM_SEG_HEAD.EMB_SIZE", "64",
        "MODEL.SEM_SEG_HEAD.EMBED_DIM", "64", "MODEL.SEM_SEG_HEAD.NUM_HEADS", "4",
    ],
)  # fmt: skip
PROMPT_LEARNING = ("open-vocabulary/freeseg_toy_learn_prompt.yaml", TINY_CLIP)
LINEAR_SEGMENTER = (SEGMENTER[0], [*SEGMENTER[1], "MODEL.SEM_SEG_HEAD.NAME", "SegmenterLinearHead"])

MINIMAL = {
    "META_ARCH/EncoderDecoder": SEGFORMER,
    "META_ARCH/SemanticFPN": FPN,
    "META_ARCH/MaskFormer": MASK2FORMER,
    "META_ARCH/SeMaskFPN": SEMASK,
    "META_ARCH/OpenVocabulary": OPEN_VOCABULARY,
    "META_ARCH/ProposalClipClassifier": PROMPT_LEARNING,
    "BACKBONE/TimmBackbone": FPN,
    "BACKBONE/MixTransformer": SEGFORMER,
    "BACKBONE/ViTBackbone": SEGMENTER,
    "BACKBONE/SeMaskSwin": SEMASK,
    "SEM_SEG_HEADS/SemanticFPNHead": FPN,
    "SEM_SEG_HEADS/SegFormerHead": SEGFORMER,
    "SEM_SEG_HEADS/SegmenterMaskTransformerHead": SEGMENTER,
    "SEM_SEG_HEADS/SegmenterLinearHead": LINEAR_SEGMENTER,
    "SEM_SEG_HEADS/SeMaskFPNHead": SEMASK,
    "PIXEL_DECODER/MSDeformAttnPixelDecoder": MASK2FORMER,
    "TRANSFORMER_DECODER/MultiScaleMaskedTransformerDecoder": MASK2FORMER,
}

ENTRIES = sorted(f"{registry}/{name}" for registry, entries in REGISTRIES.items() for name, _ in entries)


def _register_vocabulary() -> None:
    if VOCABULARY not in DatasetCatalog:
        DatasetCatalog.register(VOCABULARY, list)
        MetadataCatalog.get(VOCABULARY).set(
            stuff_classes=["sky", "car", "grass"], thing_classes=["car"], thing_dataset_id_to_contiguous_id={1: 1}
        )


def _minimal_cfg(repo_root, entry):
    if entry not in MINIMAL:
        pytest.fail(f"{entry} is registered but has no minimal config: add a row to MINIMAL in {__file__}")
    config, overrides = MINIMAL[entry]
    _register_vocabulary()
    cfg = get_cfg()
    cfg.merge_from_file(str(repo_root / "configs" / "toy" / config))
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "MODEL.SEM_SEG_HEAD.NUM_CLASSES", str(CLASSES), *overrides])
    return cfg


def _batch(meta_architecture):
    """Two 64x64 samples in the mapper's layout: a semantic map (one column band per class, a row ignored), or for
    stage-1 prompt learning one class mask per sample."""
    generator = torch.Generator().manual_seed(0)
    image = lambda: torch.randint(0, 256, (3, SIZE, SIZE), dtype=torch.uint8, generator=generator)  # noqa: E731
    if meta_architecture == "ProposalClipClassifier":
        mask = torch.zeros(1, SIZE, SIZE, dtype=torch.bool)
        mask[:, 8:40, 16:48] = True
        return [{"image": image(), "instances": {"gt_masks": mask, "gt_classes": torch.tensor([c])}} for c in (0, 2)]
    label = (torch.arange(SIZE) * CLASSES // SIZE).expand(SIZE, SIZE).clone()
    label[:4] = 255
    return [{"image": image(), "sem_seg": label, "height": SIZE, "width": SIZE} for _ in range(2)]


@pytest.mark.parametrize("entry", ENTRIES)
def test_every_registry_entry_builds_from_a_minimal_config_and_runs(repo_root, entry):
    registry, name = entry.split("/")
    cfg = _minimal_cfg(repo_root, entry)
    torch.manual_seed(0)
    model = build_model(cfg)
    cls = REGISTRIES[registry].get(name)
    assert any(type(module) is cls for module in model.modules()), f"the minimal config of {entry} does not use it"

    batch = _batch(cfg.MODEL.META_ARCHITECTURE)
    losses = model.train()(batch)
    assert losses and all(torch.isfinite(v) for v in losses.values()), losses
    with torch.no_grad():
        outputs = model.eval()(batch[:1])
    assert len(outputs) == 1
    if "sem_seg" in outputs[0]:
        assert outputs[0]["sem_seg"].shape == (CLASSES, SIZE, SIZE)
    else:
        assert outputs[0]["classification"].shape == (CLASSES,)
