"""FreeSeg's COCO panoptic test set, ``coco_2017_val_panoptic_with_sem_seg_open_vocab``: the records of Mask2Former's
``coco_2017_val_panoptic_with_sem_seg`` (which stays closed-vocabulary) with FreeSeg's two flags."""

from test_panoptic import coco_root  # noqa: F401  (the fake COCO tree fixture)

from freemask.data import DatasetCatalog, MetadataCatalog

NAME = "coco_2017_val_panoptic_with_sem_seg_open_vocab"


def test_records_are_the_panoptic_val_split_with_semantic_maps(coco_root):  # noqa: F811
    assert DatasetCatalog.get(NAME) == DatasetCatalog.get("coco_2017_val_panoptic_with_sem_seg")
    meta, closed = MetadataCatalog.get(NAME), MetadataCatalog.get("coco_2017_val_panoptic_with_sem_seg")
    for key in ("stuff_classes", "thing_classes", "stuff_dataset_id_to_contiguous_id", "panoptic_json", "json_file",
                "panoptic_root", "sem_seg_root", "image_root", "evaluator_type"):  # fmt: skip
        assert meta.get(key) == closed.get(key), key
    assert meta.trainable_flag.count(0) == 8 and meta.evaluation_flag.count(0) == 11
    assert closed.get("trainable_flag") is None and closed.get("evaluation_flag") is None
    assert str(coco_root) in meta.panoptic_json  # paths follow $DETECTRON2_DATASETS
