"""A tiny OpenVocabulary for tests: the toy Mask2Former (ResNet-18, 64-d) with the tiny random CLIP, trained on a
three-class vocabulary registered here, and an all-task record written to disk."""

import cv2
import numpy as np
import torch

from freemask.config import get_cfg
from freemask.data import DatasetCatalog, MetadataCatalog
from freemask.data.panoptic_png import id2rgb
from freemask.modeling import build_model
from freemask.modeling.clip import TINY_CLIP_NAME
from freemask.modeling.open_vocab import TASK_NAMES

TRAIN = "test_open_vocab_tiny_train"
TRAIN_NAMES = ("sky", "car", "grass")  # car is the thing
TEST = "test_open_vocab_tiny_test"
TEST_NAMES = ("sky", "car", "grass", "person")  # person: unseen thing


def register(name, names, things, records=(), **metadata):
    """Register ``name`` (once) with the metadata an open-vocabulary split has."""
    if name in DatasetCatalog:
        return
    DatasetCatalog.register(name, lambda: [dict(r) for r in records])
    MetadataCatalog.get(name).set(
        stuff_classes=list(names),
        thing_classes=[n for n in names if n in things],
        thing_dataset_id_to_contiguous_id={i: i for i, n in enumerate(names) if n in things},
        ignore_label=255,
        **metadata,
    )


def register_tiny_splits():
    register(TRAIN, TRAIN_NAMES, {"car"})
    register(TEST, TEST_NAMES, {"car", "person"}, trainable_flag=[1, 1, 1, 0])


TINY_KEYS = {
    "MODEL.META_ARCHITECTURE": "OpenVocabulary",
    "MODEL.CLIP_ADAPTER.CLIP_MODEL_NAME": TINY_CLIP_NAME,
    "MODEL.CLIP_ADAPTER.PROMPT_DIM": 64,
    "MODEL.CLIP_ADAPTER.REGION_SIZE": 64,
    "MODEL.SEM_SEG_HEAD.EMBEDDING_DIM": 64,
    "MODEL.SEM_SEG_HEAD.EMBED_HIDDEN_DIM": 64,
    "MODEL.SEM_SEG_HEAD.EMB_SIZE": 64,
    "MODEL.SEM_SEG_HEAD.EMBED_DIM": 64,
    "MODEL.SEM_SEG_HEAD.NUM_HEADS": 4,
    "MODEL.SEM_SEG_HEAD.NUM_CLASSES": len(TRAIN_NAMES),
    "MODEL.MASK_FORMER.TRAIN_NUM_POINTS": 256,
    "DATASETS.TRAIN": (TRAIN,),
    "DATASETS.TEST": (TEST,),
    "INPUT.TASK_NAME": list(TASK_NAMES),
}


def tiny_cfg(repo_root, *opts):
    """The toy Mask2Former config with TINY_KEYS, then ``opts`` (KEY, VALUE, ...)."""
    register_tiny_splits()
    cfg = get_cfg()
    cfg.merge_from_file(str(repo_root / "configs" / "toy" / "semantic-segmentation" / "mask2former_R18_toy.yaml"))
    cfg.merge_from_list([item for pair in TINY_KEYS.items() for item in pair] + list(opts))
    return cfg


def tiny_model(cfg):
    torch.manual_seed(0)
    return build_model(cfg)


def write_all_task_record(folder, name="a"):
    """64 x 64: sky (class 0, segment 1) above, grass (class 2, segment 2) below, a car (class 1, segment 7) in
    rows 20..39 x columns 8..31, a crowd car (segment 9) in the bottom-right 8 x 8 corner."""
    image = np.zeros((64, 64, 3), np.uint8)
    ids = np.ones((64, 64), np.int32)
    sem = np.zeros((64, 64), np.uint8)
    image[:32] = (70, 130, 180)
    image[32:] = (107, 142, 35)
    ids[32:], sem[32:] = 2, 2
    image[20:40, 8:32], ids[20:40, 8:32], sem[20:40, 8:32] = (0, 0, 142), 7, 1
    image[-8:, -8:], ids[-8:, -8:], sem[-8:, -8:] = (0, 0, 142), 9, 1
    paths = {}
    for key, array in (("file_name", image), ("pan_seg_file_name", id2rgb(ids)), ("sem_seg_file_name", sem)):
        path = folder / f"{name}_{key}.png"
        cv2.imwrite(str(path), cv2.cvtColor(array, cv2.COLOR_RGB2BGR) if array.ndim == 3 else array)
        paths[key] = str(path)
    segments = [
        {"id": 1, "category_id": 0, "iscrowd": 0, "isthing": False},
        {"id": 2, "category_id": 2, "iscrowd": 0, "isthing": False},
        {"id": 7, "category_id": 1, "iscrowd": 0, "isthing": True},
        {"id": 9, "category_id": 1, "iscrowd": 1, "isthing": True},
    ]
    return {**paths, "image_id": name, "height": 64, "width": 64, "segments_info": segments}


def random_sample(generator, with_segments=True, size=64):
    """A mapper-like training dict: random pixels, sky / grass with a car box, and (optionally) the car and grass
    segments."""
    sem = torch.zeros(size, size, dtype=torch.int64)
    sem[size // 2 :] = 2
    sem[4:12, 4:20] = 1
    sample = {"image": torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=generator), "sem_seg": sem}
    if with_segments:
        masks = torch.stack([sem == 1, sem == 2])
        sample["instances"] = {
            "gt_masks": masks,
            "gt_classes": torch.tensor([1, 2]),
            "gt_is_thing": torch.tensor([True, False]),
        }
    return sample
