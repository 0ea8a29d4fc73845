"""The semantic mapper ships uint8 label maps; every model must train to exactly the losses int64 maps give.

``SemanticSegmentor.forward`` widens ``sem_seg`` to int64 on the model's device (the per-pixel losses index with it);
``MaskFormer._semantic_target`` (mixed instance/semantic batches, OpenVocabulary's semantic task) uses the compact map
as it is, since ``targets_from_semantic`` only compares with it and widens the class labels it finds. Either way the
same batch with uint8 or int64 maps must give bit-identical losses.
"""

import pytest
import torch

from freemask.config import get_cfg
from freemask.modeling import build_model

CONFIGS = ["semantic_fpn_R18_toy.yaml", "mask2former_R18_toy.yaml"]


def toy_model(repo_root, config: str) -> torch.nn.Module:
    cfg = get_cfg()
    cfg.merge_from_file(str(repo_root / "configs" / "toy" / "semantic-segmentation" / config))
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "MODEL.BACKBONE.PRETRAINED", ""])
    torch.manual_seed(0)
    return build_model(cfg).train()


def batch(labels: torch.dtype, size: int = 48) -> list[dict]:
    """Two samples of random labels 0..3 with an ignored corner, the second smaller (the batch pads it)."""
    g = torch.Generator().manual_seed(0)
    samples = []
    for h, w in ((size, size), (size - 16, size - 8)):
        sem = torch.randint(0, 4, (h, w), generator=g)
        sem[:6, -6:] = 255
        image = torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8)
        samples.append({"image": image, "sem_seg": sem.to(labels), "height": h, "width": w})
    return samples


def losses(model: torch.nn.Module, samples: list[dict]) -> dict[str, torch.Tensor]:
    torch.manual_seed(1)  # Mask2Former samples its loss points at random
    with torch.no_grad():
        return model(samples)


@pytest.mark.parametrize("config", CONFIGS)
def test_uint8_and_int64_label_maps_give_identical_losses(repo_root, config):
    model = toy_model(repo_root, config)
    wide, narrow = losses(model, batch(torch.int64)), losses(model, batch(torch.uint8))
    assert set(wide) == set(narrow) and wide
    assert all(torch.equal(wide[k], narrow[k]) for k in wide), {k: (wide[k], narrow[k]) for k in wide}


def test_mixed_instance_batch_takes_uint8_semantic_maps(repo_root):
    """A synthetic pair (semantic map only) next to an instance sample goes through ``_semantic_target``."""
    model = toy_model(repo_root, "mask2former_R18_toy.yaml")

    def mixed(labels: torch.dtype) -> list[dict]:
        samples = batch(labels)
        sem = samples[0].pop("sem_seg").long()
        masks = torch.stack([sem == 1, sem == 2])
        samples[0]["instances"] = {"gt_masks": masks, "gt_classes": torch.tensor([1, 2])}
        return samples

    wide, narrow = losses(model, mixed(torch.int64)), losses(model, mixed(torch.uint8))
    assert all(torch.equal(wide[k], narrow[k]) for k in wide)
