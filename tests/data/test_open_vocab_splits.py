"""FreeSeg's seen/unseen splits: the lists of meta/open_vocab_splits.json against the class tables and
bytedance/FreeSeg's registrations (mask2former/data/datasets/register_*.py), and the metadata and re-indexing each
kind derives from them."""

import json

import numpy as np
import pytest

from freemask.data.datasets.class_meta import read_meta_file
from freemask.data.datasets.open_vocab import OpenVocabSplit, kind_suffix, open_vocab_split
from freemask.data.datasets.panoptic import PanopticCategories
from freemask.data.datasets.toy import TOY_CLASSES
from freemask.modeling.open_vocab.vocabulary import Vocabulary

# As FreeSeg's registrations write them: COCO "id - 1" values, VOC raw ids, ADE 0-based ids
COCO_UNSEEN_ID_MINUS_1 = [20, 24, 32, 33, 40, 56, 86, 99, 105, 123, 144, 147, 148, 168, 171]
COCO_UNSEEN_THINGS = {"cow", "giraffe", "suitcase", "frisbee", "skateboard", "carrot", "scissors"}
ADE_NOVEL_ID = [9, 15, 30, 37, 49, 60, 74, 81, 89, 99, 112, 128, 136, 143, 149]
ADE_UNSEEN_THINGS = 11
VOC_UNSEEN_RAW = [16, 17, 18, 19, 20]


def test_coco_stuff_unseen_are_freesegs_coco_ids():
    split = open_vocab_split("coco_stuff_171")
    coco_ids = read_meta_file("coco_stuff_171.json")["coco_ids"]
    assert sorted(coco_ids[i] - 1 for i in split.unseen) == COCO_UNSEEN_ID_MINUS_1
    assert len(split.seen) == 156 and len(split.unseen) == 15
    names = [split.categories.names[i] for i in split.unseen]
    assert {n for n, i in zip(names, split.unseen) if split.categories.isthing[i]} == COCO_UNSEEN_THINGS
    assert sum(split.categories.isthing) == 80


def test_ade20k_unseen_are_freesegs_novel_ids():
    split = open_vocab_split("ade20k_150")
    assert list(split.unseen) == ADE_NOVEL_ID and split.categories.ids == tuple(range(150))
    assert len(split.seen) == 135
    assert sum(split.categories.isthing[i] for i in split.unseen) == ADE_UNSEEN_THINGS
    assert [split.categories.names[i] for i in split.unseen] == read_meta_file("open_vocab_splits.json")[
        "ade20k_150"
    ]["unseen_names"]


def test_coco_panoptic_split_has_the_models_and_the_metrics_flags():
    """register_coco_panoptic.py's trainable_flag (8 of its 9 ids exist among the 133) for the model, the 11 novel
    classes of FreeSeg's panoptic evaluator for the metrics."""
    split = open_vocab_split("coco_panoptic_133")
    meta = split.metadata("all")
    assert len(meta["stuff_classes"]) == 133 and meta["trainable_flag"].count(0) == 8
    assert meta["evaluation_flag"].count(0) == 11
    assert [meta["stuff_classes"][i] for i, f in enumerate(meta["evaluation_flag"]) if not f][7:10] == [
        "cardboard", "playingfield", "river"
    ]  # fmt: skip
    assert "evaluation_flag" not in small_split().metadata("all")  # one list: the metrics use trainable_flag
    with pytest.raises(ValueError, match="metric_unseen"):
        OpenVocabSplit("bad", small_split().categories, (1,), (0, 1, 2, 3))


def test_voc_unseen_are_the_last_five_raw_ids():
    split = open_vocab_split("voc_20")
    assert [split.categories.ids[i] for i in split.unseen] == VOC_UNSEEN_RAW
    assert split.categories.names[:3] == ("aeroplane", "bicycle", "bird") and len(split.categories.names) == 20
    assert len(read_meta_file("voc_20.json")["colors"]) == 20


def test_toy_holds_out_one_thing_and_one_stuff():
    split = open_vocab_split("toy_6")
    assert split.categories.names == TOY_CLASSES
    assert [TOY_CLASSES[i] for i in split.unseen] == ["road", "person"]
    assert split.trainable_flag == [1, 1, 0, 1, 1, 0]
    assert split.evaluation_set == {"base": [0, 1, 3, 4], "novel_thing": [5], "novel_stuff": [2]}


def test_unseen_names_are_checked_against_the_class_table(monkeypatch):
    """A list edited by hand that no longer names its classes fails at load, naming the file."""
    from freemask.data.datasets import class_meta, open_vocab

    data = json.loads(json.dumps(read_meta_file("open_vocab_splits.json")))
    data["voc_20"]["unseen"] = [14, 16, 17, 18, 19]
    real = class_meta.read_meta_file
    monkeypatch.setattr(open_vocab, "read_meta_file", lambda f: data if f == "open_vocab_splits.json" else real(f))
    open_vocab.open_vocab_split.cache_clear()
    try:
        with pytest.raises(ValueError, match="open_vocab_splits.json.*voc_20"):
            open_vocab.open_vocab_split("voc_20")
    finally:
        open_vocab.open_vocab_split.cache_clear()


def small_split():
    categories = PanopticCategories(
        (3, 7, 9, 11), ("a", "b", "c", "d"), (True, False, True, False), ((1, 1, 1), (2, 2, 2), (3, 3, 3), (4, 4, 4))
    )
    return OpenVocabSplit("small", categories, (2, 1))


def test_kinds_reindex_in_vocabulary_order():
    split = small_split()
    assert split.members("all") == (0, 1, 2, 3) and split.members("base") == (0, 3) and split.members("novel") == (1, 2)
    assert split.to_kind("base").tolist() == [0, 255, 255, 1]
    assert split.to_kind("novel").tolist() == [255, 0, 1, 255]
    assert split.categories_of("novel").ids == (7, 9)
    assert [kind_suffix(k) for k in ("all", "base", "novel")] == ["", "_base", "_novel"]
    with pytest.raises(ValueError):
        kind_suffix("seen")


def test_metadata_of_each_kind():
    split = small_split()
    full, base, novel = (split.metadata(k) for k in ("all", "base", "novel"))
    assert full["stuff_classes"] == ["a", "b", "c", "d"] and full["trainable_flag"] == [1, 0, 0, 1]
    assert full["evaluation_set"] == {"base": [0, 3], "novel_thing": [2], "novel_stuff": [1]}
    assert base["stuff_classes"] == ["a", "d"] and "trainable_flag" not in base and "evaluation_set" not in base
    assert base["stuff_dataset_id_to_contiguous_id"] == {3: 0, 11: 1} and base["thing_dataset_id_to_contiguous_id"] == {
        3: 0
    }
    assert novel["stuff_classes"] == ["b", "c"] and novel["trainable_flag"] == [0, 0]
    assert novel["thing_classes"] == ["c"] and novel["thing_dataset_id_to_contiguous_id"] == {9: 1}
    assert all(m["ignore_label"] == 255 for m in (full, base, novel))


def test_vocabulary_from_the_metadata():
    """What the model builds from a test set's metadata: unseen classes flagged, things known."""

    class Meta(dict):
        __getattr__ = dict.__getitem__

    vocab = Vocabulary.from_metadata(Meta(small_split().metadata("all")))
    assert vocab.seen == (True, False, False, True) and vocab.thing_ids == (0, 2)


@pytest.mark.parametrize("unseen", [(), (0, 1, 2, 3), (1, 1), (4,)])
def test_bad_unseen_lists_are_refused(unseen):
    with pytest.raises(ValueError):
        OpenVocabSplit("bad", small_split().categories, unseen)


def test_coco_base_things_stay_first():
    """COCO's things come before its stuff in every kind, so a thing's position among things is its contiguous id."""
    for kind in ("all", "base", "novel"):
        isthing = np.array(open_vocab_split("coco_stuff_171").categories_of(kind).isthing)
        assert not np.any(isthing[np.argmin(isthing) :])
