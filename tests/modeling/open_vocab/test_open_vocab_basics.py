"""The vocabulary an open-vocabulary model is given, and the task drawn per training step."""

import pytest

from freemask.config import ConfigError
from freemask.data import MetadataCatalog
from freemask.modeling.open_vocab import TASK_NAMES, TaskSampler, Vocabulary
from freemask.modeling.open_vocab.vocabulary import VocabularyError


def test_task_sequence_depends_on_seed_and_step_only():
    a, b = TaskSampler(TASK_NAMES, seed=7), TaskSampler(TASK_NAMES, seed=7)
    sequence = [a.task_at(i) for i in range(200)]
    assert sequence == [b.task_at(i) for i in range(200)]
    assert sequence[100:] == [a.task_at(i) for i in range(100, 200)]  # a resumed run continues the same draws
    assert set(sequence) == set(TASK_NAMES)
    assert sequence != [TaskSampler(TASK_NAMES, seed=8).task_at(i) for i in range(200)]


def test_single_task_and_bad_task_names():
    assert {TaskSampler(["semantic segmentation."], 0).task_at(i) for i in range(10)} == {"semantic segmentation."}
    with pytest.raises(ConfigError, match="INPUT.TASK_NAME"):
        TaskSampler(["semantic"], 0)
    with pytest.raises(ConfigError, match="INPUT.TASK_NAME"):
        TaskSampler([], 0)


def test_vocabulary_from_metadata_and_names():
    meta = MetadataCatalog.get("_test_vocab_split")
    meta.set(stuff_classes=["sky", "car", "road"], thing_classes=["car"], trainable_flag=[1, 1, 0])
    vocab = Vocabulary.from_metadata(meta)
    assert vocab.names == ("sky", "car", "road") and vocab.seen == (True, True, False)
    assert vocab.thing_ids == (1,)
    assert vocab.seen_source == "the trainable_flag of _test_vocab_split"
    # no trainable_flag: every class unseen, as FreeSeg's trained_mask of zeros (the ensemble leans on CLIP)
    unflagged = MetadataCatalog.get("_test_vocab_split_unflagged")
    unflagged.set(stuff_classes=["sky", "car"], thing_classes=["car"])
    assert Vocabulary.from_metadata(unflagged).seen == (False, False)
    assert "_test_vocab_split_unflagged has no trainable_flag" in Vocabulary.from_metadata(unflagged).seen_source
    typed = Vocabulary.from_names(["cat", " dog", ""])
    assert typed.names == ("cat", "dog") and typed.seen == (False, False)
    with pytest.raises(VocabularyError, match="repeats"):
        Vocabulary.from_names(["cat", "cat"])
    with pytest.raises(VocabularyError, match="no class"):
        Vocabulary.from_names([" "])
