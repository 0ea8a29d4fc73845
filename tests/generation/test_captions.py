"""FreestyleNet's captions: name tables, label -> FreestyleNet id mapping, token spans, the 75-token overflow."""

import numpy as np
import pytest

from freemask.data.datasets.ade20k import ade20k_meta
from freemask.data.datasets.class_meta import read_meta_file
from freemask.data.datasets.coco_stuff import coco_stuff_meta
from freemask.generation.captions import USABLE_TOKENS, CaptionBuilder, dataset_family, freestylenet_names
from freemask.generation.clip_vocab import load_clip_tokenizer
from freemask.generation.errors import GenerationError

# FreestyleNet hard-codes which ids take more than one CLIP token (essunny310/FreestyleNet,
# ldm/modules/attention_{ADE20K,COCO}.py, CrossAttention.forward).
ADE_TWO = {
    *(39, 41, 44, 57, 59, 63, 65, 71, 75, 76, 79, 80, 87, 88, 92),
    *(96, 97, 98, 100, 106, 109, 110, 135, 137, 139, 145),
}
ADE_THREE = {49}
COCO_THREE = {10, 157}


@pytest.fixture(scope="module")
def tokenizer():
    return load_clip_tokenizer()


def _count(tokenizer, name):
    return len(tokenizer(name, add_special_tokens=False).input_ids)


def test_name_tables_map_our_labels_to_freestylenet_ids():
    ade = freestylenet_names("ade20k")
    assert len(ade) == 150 and ade[0] == "wall"
    # FreestyleNet's own words where ADE20K's differ (ids 14, 41, 98 = our labels 13, 40, 97).
    assert (ade[13], ade[40], ade[97]) == ("ground", "pedestal", "pouf")
    assert ade_label("earth") == 13 and ade_label("base") == 40 and ade_label("ottoman") == 97
    coco = freestylenet_names("coco_stuff")
    ours = coco_stuff_meta()[0]
    assert len(coco) == 171
    assert coco[ours.index("person")] == "person" and coco[ours.index("building-other")] == "building"
    assert coco[ours.index("wood")] == "wood" and coco[ours.index("playingfield")] == "playingfield"
    assert "street sign" not in coco  # COCO id 12 is unused by COCO-Stuff's 171 classes


def ade_label(name):
    return ade20k_meta()[0].index(name)


def test_token_counts_match_freestylenet_hard_coded_lists(tokenizer):
    ade = freestylenet_names("ade20k")
    counts = {k + 1: _count(tokenizer, n) for k, n in enumerate(ade)}  # FreestyleNet id = label + 1
    assert {i for i, c in counts.items() if c == 2} == ADE_TWO
    assert {i for i, c in counts.items() if c == 3} == ADE_THREE
    coco_ids = read_meta_file("coco_stuff_171.json")["coco_ids"]
    counts = {coco_ids[k] - 1: _count(tokenizer, n) for k, n in enumerate(freestylenet_names("coco_stuff"))}
    assert {i for i, c in counts.items() if c == 3} == COCO_THREE
    assert all(c <= 3 for c in counts.values())


def test_caption_spans_and_ids_match_the_tokenizer(tokenizer):
    builder = CaptionBuilder(freestylenet_names("ade20k"), tokenizer, ignore_label=255)
    labels = np.full((8, 8), 255, dtype=np.int64)
    labels[:4] = ade_label("pool table")  # 2 tokens
    labels[4:, :4] = ade_label("wall")  # 1 token
    labels[4:, 4:6] = ade_label("skyscraper")  # 3 tokens
    caption = builder(labels)
    assert caption.text == "wall skyscraper pool table"  # ascending label order, single spaces
    assert [(s.name, s.start, s.stop) for s in caption.spans] == [
        ("wall", 1, 2),
        ("skyscraper", 2, 5),
        ("pool table", 5, 7),
    ]
    expected = tokenizer(caption.text, padding="max_length", max_length=77).input_ids
    assert list(caption.input_ids) == expected
    tokens = caption.token_labels()
    assert tokens[0] == -1 and tokens[7] == -1 and list(tokens[1:7]) == [0, 48, 48, 48, 56, 56]
    assert caption.dropped == ()
    assert list(builder.empty().input_ids) == tokenizer("", padding="max_length", max_length=77).input_ids


def test_coco_caption_uses_freestylenet_names(tokenizer):
    ours = coco_stuff_meta()[0]
    builder = CaptionBuilder(freestylenet_names("coco_stuff"), tokenizer)
    labels = np.array([[ours.index("fire hydrant"), ours.index("skyscraper")], [ours.index("ceiling-tile"), 255]])
    caption = builder(labels)
    assert caption.text == "fire hydrant tile ceiling skyscraper"
    assert [s.stop - s.start for s in caption.spans] == [3, 2, 3]
    assert list(caption.input_ids) == tokenizer(caption.text, padding="max_length", max_length=77).input_ids


def test_overflow_keeps_the_largest_classes_that_fit(tokenizer):
    names = freestylenet_names("ade20k")
    builder = CaptionBuilder(names, tokenizer)
    rng = np.random.default_rng(0)
    area = rng.permutation(np.arange(1, 151)) * 3  # distinct areas in a random order of labels
    labels = np.repeat(np.arange(150), area)[None, :]
    caption = builder(labels)
    kept = [s.label for s in caption.spans]
    cost = {k: _count(tokenizer, names[k]) for k in range(150)}
    assert kept == sorted(kept) and caption.dropped and sorted(kept + list(caption.dropped)) == list(range(150))
    assert sum(cost[k] for k in kept) <= USABLE_TOKENS
    assert max(s.stop for s in caption.spans) <= USABLE_TOKENS + 1 and caption.input_ids[-1] == tokenizer.pad_token_id
    for d in caption.dropped:  # it did not fit when its turn (by area) came
        larger = [k for k in kept if area[k] > area[d]]
        assert sum(cost[k] for k in larger) + cost[d] > USABLE_TOKENS
    # the biggest region always keeps its text; dropped pixels see only the open tokens
    assert int(np.argmax(area)) in kept and not set(caption.dropped) & set(caption.token_labels().tolist())


def test_labels_outside_the_classes_are_refused(tokenizer):
    builder = CaptionBuilder(freestylenet_names("ade20k"), tokenizer)
    with pytest.raises(GenerationError, match="label 150, outside the 150 classes"):
        builder(np.array([[0, 150]]))


def test_dataset_family():
    assert dataset_family("ade20k") == "ade20k" and dataset_family("coco_stuff") == "coco_stuff"
    assert dataset_family("ade20k_sem_seg_train") == "ade20k"
    assert dataset_family("coco_2017_train_stuff_sem_seg") == "coco_stuff"
    assert dataset_family("toy_sem_seg_train") is None and dataset_family("no_such_dataset") is None
