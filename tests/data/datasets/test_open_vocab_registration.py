"""The open-vocabulary registrations: FreeSeg's names all present at import, no disk read until a split is
loaded, and a missing prepared folder reported in one line naming the preparation command."""

import pytest

from freemask.data.catalog import DatasetCatalog, MetadataCatalog
from freemask.data.errors import DatasetError

NAMES = (
    [f"voc{k}_sem_seg_{s}" for k in ("", "_base", "_novel") for s in ("train", "test")]
    + [f"coco_2017_{s}_stuff{k}_sem_seg" for k in ("", "_base", "_novel") for s in ("train", "test")]
    + [f"coco_2017_{s}_full_task{k}" for k in ("", "_base", "_novel") for s in ("train", "test")]
    + [f"ade20k_all_{s}{k}" for k in ("", "_base", "_novel") for s in ("train", "val")]
    + [f"toy_ov_{s}{k}" for k in ("", "_base", "_novel") for s in ("train", "val")]
)


@pytest.mark.parametrize("name", NAMES)
def test_registered_with_stage1_twin(name):
    assert name in DatasetCatalog and f"{name}_classification" in DatasetCatalog
    meta = MetadataCatalog.get(name)
    assert meta.ignore_label == 255 and len(meta.stuff_classes) in (4, 6, 2, 15, 20, 5, 171, 156, 135, 150)
    full = not ("_base" in name or "_novel" in name)
    if full and name != "coco_2017_train_stuff_sem_seg":  # FreeMask's own registration keeps its metadata
        flags = meta.trainable_flag
        assert len(flags) == len(meta.stuff_classes) and 0 < sum(flags) < len(flags)
        assert meta.evaluation_set["base"] == [i for i, f in enumerate(flags) if f]


@pytest.mark.parametrize(
    "name,command",
    [
        ("voc_base_sem_seg_train", "datasets/prepare_voc_sem_seg.py"),
        ("voc_sem_seg_test_classification", "datasets/prepare_voc_sem_seg.py"),
        ("coco_2017_test_stuff_base_sem_seg", "datasets/prepare_coco_stuff_164k_open_vocab.py"),
        ("coco_2017_train_full_task_base", "datasets/prepare_coco_full_task.py"),
        ("coco_2017_train_full_task_base_classification", "datasets/prepare_coco_full_task.py"),
        ("ade20k_all_val", "datasets/prepare_ade20k_open_vocab.py"),
        ("ade20k_all_train_base_classification", "datasets/prepare_ade20k_open_vocab.py"),
        ("toy_ov_train_base", "tools/make_toy_dataset.py"),
    ],
)
def test_missing_prepared_files_name_the_command(name, command, tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    with pytest.raises(DatasetError) as error:
        DatasetCatalog.get(name)
    message = str(error.value)
    assert command in message and str(tmp_path) in message and "\n" not in message


def test_metadata_paths_follow_the_datasets_root(tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    meta = MetadataCatalog.get("ade20k_all_train_base")
    assert meta.sem_seg_root == str(tmp_path / "ADEChallengeData2016" / "annotations_detectron2" / "training_base")
    assert meta.json_file == str(tmp_path / "ADEChallengeData2016" / "ade20k_instance_train_base.json")
    assert MetadataCatalog.get("coco_2017_test_full_task_novel").panoptic_json == str(
        tmp_path / "coco" / "panoptic_detectron2" / "panoptic_val2017_novel.json"
    )
