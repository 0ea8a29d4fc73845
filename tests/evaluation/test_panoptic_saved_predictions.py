"""COCOPanopticEvaluator(save_predictions=True): each rank writes its PNGs as images are evaluated, rank 0 the JSON;
the files are the COCO panoptic format the evaluator wrote before (one PNG per image, the JSON with segments_info),
computed here from the format's rules; TEST.SAVE_PREDICTIONS reaches it; a folder it cannot write is one line."""

import json
import math
import os
import socket
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import freemask.evaluation.panoptic_evaluator as panoptic_module
from freemask import cli
from freemask.data.catalog import DatasetCatalog, MetadataCatalog
from freemask.engine.defaults import setup_cfg
from freemask.engine.trainer import Trainer
from freemask.errors import OutputNotWritableError, OutputWriteError
from freemask.evaluation import COCOPanopticEvaluator, InstanceSegEvaluator
from freemask.evaluation.panoptic_evaluator import panoptic_categories

CLASSES = ["car", "person", "sky", "road"]
DATASET_IDS = {11: 0, 12: 1, 23: 2, 24: 3}  # dataset id -> contiguous id; car, person things
THINGS = {11: 0, 12: 1}
TO_DATASET_ID = {c: d for d, c in DATASET_IDS.items()}

GT = [np.array([[7, 7, 3, 3], [7, 7, 3, 3]]), np.array([[0, 5, 5, 5], [0, 5, 5, 9]])]
GT_SEGMENTS = [  # contiguous category ids, as Mask2Former's dataset dicts carry them
    [{"id": 7, "category_id": 0, "iscrowd": 0}, {"id": 3, "category_id": 2, "iscrowd": 0}],
    [{"id": 5, "category_id": 0, "iscrowd": 0}, {"id": 9, "category_id": 3, "iscrowd": 0}],
]
# Predicted ids large enough to fill all three RGB channels (65793 = 1 + 256 + 256²), one void pixel.
PRED = [np.array([[65793, 65793, 2, 2], [65793, 65793, 2, 2]]), np.array([[1, 1, 1, 0], [1, 1, 1, 70000]])]
PRED_SEGMENTS = [
    [{"id": 65793, "category_id": 0, "isthing": True, "score": 0.9}, {"id": 2, "category_id": 2, "isthing": False}],
    [{"id": 1, "category_id": 0, "isthing": True, "score": 0.8}, {"id": 70000, "category_id": 3, "isthing": False}],
]


# ------------------------------------------------------------------ the files, from the COCO panoptic format's rules
def bgr_of(ids):
    """Segment ids as a COCO panoptic PNG's colours, ``id = R + 256 G + 256² B``, in OpenCV's channel order (BGR)."""
    ids = np.asarray(ids, np.int64)
    return np.stack([(ids >> 16) & 255, (ids >> 8) & 255, ids & 255], axis=-1).astype(np.uint8)


def expected_png(ids):
    """The PNG bytes of ``ids`` as the evaluator encoded them in memory before: OpenCV's default PNG settings."""
    ok, encoded = cv2.imencode(".png", bgr_of(ids))
    assert ok
    return encoded.tobytes()


def expected_annotation(i):
    segments = []
    for s in PRED_SEGMENTS[i]:
        segment = {"id": s["id"], "category_id": TO_DATASET_ID[s["category_id"]]}
        if "score" in s:
            segment["score"] = s["score"]
        segment.update(iscrowd=0, area=int(np.count_nonzero(PRED[i] == s["id"])))
        segments.append(segment)
    return {"image_id": i, "file_name": f"img_{i}.png", "segments_info": segments}


def expected_json(indices):
    """panoptic_predictions.json's text: strict JSON indented by 2 without a final newline (the results files'
    format), annotations in the order the images were evaluated, categories in contiguous order."""
    categories = [
        {"id": d, "name": CLASSES[c], "isthing": int(d in THINGS)}
        for d, c in sorted(DATASET_IDS.items(), key=lambda x: x[1])
    ]
    return json.dumps({"annotations": [expected_annotation(i) for i in indices], "categories": categories}, indent=2)


def decoded_ids(path):
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR).astype(np.int64)
    return bgr[..., 2] + 256 * bgr[..., 1] + 65536 * bgr[..., 0]


# ------------------------------------------------------------------------------------------------- the dataset
def make_records(root):
    records = []
    for i, (gt, segments) in enumerate(zip(GT, GT_SEGMENTS)):
        png = Path(root) / f"pan_{i}.png"
        cv2.imwrite(str(png), bgr_of(gt))
        records.append(
            {
                "file_name": str(Path(root) / f"img_{i}.jpg"),
                "pan_seg_file_name": str(png),
                "segments_info": [dict(s) for s in segments],
                "image_id": i,
                "height": 2,
                "width": 4,
            }
        )
    return records


def set_metadata(name):
    MetadataCatalog.get(name).set(
        stuff_classes=CLASSES,
        thing_classes=CLASSES[:2],
        stuff_dataset_id_to_contiguous_id=DATASET_IDS,
        thing_dataset_id_to_contiguous_id=THINGS,
    )


@pytest.fixture
def dataset(tmp_path):
    name = f"_test_panoptic_saved_{os.getpid()}_{tmp_path.name}"
    (tmp_path / "data").mkdir()
    records = make_records(tmp_path / "data")
    DatasetCatalog.register(name, lambda: records)
    set_metadata(name)
    yield name
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def outputs(i):
    return [{"panoptic_seg": (torch.as_tensor(PRED[i], dtype=torch.int32), [dict(s) for s in PRED_SEGMENTS[i]])}]


def inputs(i):
    return [{"file_name": f"img_{i}", "image_id": i}]


def run(evaluator, indices):
    evaluator.reset()
    for i in indices:
        evaluator.process(inputs(i), outputs(i))
    return evaluator.evaluate()["panoptic_seg"]


def same_metrics(a, b):
    assert list(a) == list(b)
    for key in a:
        assert (math.isnan(a[key]) and math.isnan(b[key])) or a[key] == b[key], key


# ------------------------------------------------------------------------------------------------------- tests
def test_pngs_and_json_are_the_coco_panoptic_files_of_the_predictions(dataset, tmp_path):
    out_dir = tmp_path / "inference"
    run(COCOPanopticEvaluator.from_dataset(dataset, str(out_dir), save_predictions=True), [0, 1])
    folder = out_dir / "panoptic"
    assert sorted(os.listdir(folder)) == ["img_0.png", "img_1.png", "panoptic_predictions.json"]  # no temporaries
    for i in range(2):
        assert (folder / f"img_{i}.png").read_bytes() == expected_png(PRED[i])
        assert np.array_equal(decoded_ids(folder / f"img_{i}.png"), PRED[i])
    assert (folder / "panoptic_predictions.json").read_text() == expected_json([0, 1])


def test_each_png_is_on_disk_once_processed_and_only_segments_info_is_gathered(dataset, tmp_path, monkeypatch):
    gathered = []

    def recording_gather(obj):
        gathered.append(obj)
        return [obj]

    monkeypatch.setattr(panoptic_module, "gather_to_main", recording_gather)
    evaluator = COCOPanopticEvaluator.from_dataset(dataset, str(tmp_path), save_predictions=True)
    evaluator.process(inputs(0), outputs(0))
    assert (tmp_path / "panoptic" / "img_0.png").read_bytes() == expected_png(PRED[0])  # before evaluate()
    evaluator.process(inputs(1), outputs(1))
    evaluator.evaluate()
    (annotations,) = gathered
    assert annotations == [expected_annotation(0), expected_annotation(1)]  # plain numbers: no PNG, no id map


def test_metrics_are_the_same_with_and_without_saving(dataset, tmp_path):
    saved = run(COCOPanopticEvaluator.from_dataset(dataset, str(tmp_path / "a"), save_predictions=True), [0, 1])
    plain = run(COCOPanopticEvaluator.from_dataset(dataset, str(tmp_path / "b")), [0, 1])
    same_metrics(saved, plain)
    assert saved["PQ-car"] == pytest.approx(100 * (1 + 0.8) / 2)  # image 1's car: IoU 4 / (6 + 5 - 4 - 2)
    assert not (tmp_path / "b" / "panoptic").exists()


def test_a_new_pass_rewrites_the_json_with_its_own_images(dataset, tmp_path):
    evaluator = COCOPanopticEvaluator.from_dataset(dataset, str(tmp_path), save_predictions=True)
    run(evaluator, [0, 1])
    run(evaluator, [1])
    assert (tmp_path / "panoptic" / "panoptic_predictions.json").read_text() == expected_json([1])


def test_two_images_with_one_stem_are_refused_before_the_second_png(dataset, tmp_path):
    records = DatasetCatalog.get(dataset)
    twin = {**records[1], "file_name": str(tmp_path / "other" / "img_0.jpg"), "image_id": 1}
    evaluator = COCOPanopticEvaluator.from_dataset(dataset, str(tmp_path / "out"), save_predictions=True)
    evaluator.process([records[0]], outputs(0))
    with pytest.raises(ValueError, match="images 0 and 1 share the file name stem of img_0.png"):
        evaluator.process([twin], outputs(1))
    assert (tmp_path / "out" / "panoptic" / "img_0.png").read_bytes() == expected_png(PRED[0])  # the first is kept


def test_an_output_folder_that_cannot_be_made_is_one_line_before_any_image(dataset, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    out_dir = blocker / "inference"
    with pytest.raises(OutputNotWritableError) as e:
        COCOPanopticEvaluator.from_dataset(dataset, str(out_dir), save_predictions=True)
    assert str(e.value) == (
        f"the folder of the saved panoptic predictions {out_dir / 'panoptic'}: {blocker} is a file, not a folder; "
        "choose another output folder"
    )
    assert cli.run(COCOPanopticEvaluator.from_dataset, dataset, str(out_dir), "cpu", True) == 1
    assert capsys.readouterr().err == f"error: {e.value}\n"


def test_a_full_disk_stops_at_the_png_being_written_with_one_line(dataset, tmp_path, monkeypatch):
    real_open = open

    def full_disk(path, *args, **kwargs):
        return real_open("/dev/full" if ".img_1.png." in str(path) else path, *args, **kwargs)

    monkeypatch.setattr("freemask.utils.atomic.open", full_disk, raising=False)
    evaluator = COCOPanopticEvaluator.from_dataset(dataset, str(tmp_path), save_predictions=True)
    evaluator.process(inputs(0), outputs(0))
    with pytest.raises(OutputWriteError) as e:
        evaluator.process(inputs(1), outputs(1))
    folder = tmp_path / "panoptic"
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith(f"cannot write {folder / 'img_1.png'}: No space left on device (ENOSPC);")
    assert sorted(os.listdir(folder)) == ["img_0.png"]  # no half PNG, no temporary


def test_the_config_key_reaches_the_evaluators_train_net_builds(dataset, tmp_path):
    universal = ["MODEL.MASK_FORMER.TEST.PANOPTIC_ON", "True", "MODEL.MASK_FORMER.TEST.INSTANCE_ON", "True"]
    universal += ["MODEL.MASK_FORMER.TEST.SEMANTIC_ON", "False"]
    for save in (False, True):
        cfg = setup_cfg("", universal + ["TEST.SAVE_PREDICTIONS", str(save)])
        out_dir = tmp_path / f"save_{save}"
        evaluators = Trainer.build_evaluator(cfg, dataset, str(out_dir)).evaluators
        panoptic = [e for e in evaluators if isinstance(e, COCOPanopticEvaluator)]
        instance = [e for e in evaluators if isinstance(e, InstanceSegEvaluator)]
        assert len(panoptic) == len(instance) == 1 and instance[0].save_predictions is save
        run(panoptic[0], [0, 1])
        saved = out_dir / "panoptic" / "panoptic_predictions.json"
        assert saved.is_file() is save
        if save:
            assert saved.read_text() == expected_json([0, 1])
    assert setup_cfg("", []).TEST.SAVE_PREDICTIONS is False


# ------------------------------------------------------------------------------------------------ two gloo ranks
def _distributed_worker(rank, world_size, port, root, out_dir, result_file, save):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        set_metadata("_pan_saved_dist")
        records = make_records(Path(root) / f"rank{rank}")  # each rank writes its own copy of the ground truth
        categories = panoptic_categories("_pan_saved_dist")
        evaluator = COCOPanopticEvaluator(categories, records=records, output_dir=out_dir, save_predictions=save)
        evaluator.process(inputs(rank), outputs(rank))  # rank 0 evaluates image 0, rank 1 image 1
        on_disk = os.path.isfile(os.path.join(out_dir, "panoptic", f"img_{rank}.png"))
        dist.barrier()
        metrics = evaluator.evaluate()["panoptic_seg"]
        with open(f"{result_file}.rank{rank}", "w") as f:
            json.dump({"metrics": metrics, "png_on_disk_before_evaluate": on_disk}, f)
    finally:
        dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_two_ranks(tmp_path, save):
    for rank in range(2):
        os.makedirs(tmp_path / f"rank{rank}", exist_ok=True)
    out_dir, result_file = str(tmp_path / f"inference_{save}"), str(tmp_path / f"result_{save}")
    args = (2, free_port(), str(tmp_path), out_dir, result_file, save)
    mp.start_processes(_distributed_worker, args=args, nprocs=2, start_method="forkserver")  # as launch() does
    results = []
    for rank in range(2):
        with open(f"{result_file}.rank{rank}") as f:
            results.append(json.load(f))
    return Path(out_dir), results


def test_two_ranks_write_their_own_pngs_and_rank_0_the_json_of_both(dataset, tmp_path):
    out_dir, results = run_two_ranks(tmp_path, save=True)
    assert [r["png_on_disk_before_evaluate"] for r in results] == [True, True]
    folder = out_dir / "panoptic"
    for i in range(2):
        assert (folder / f"img_{i}.png").read_bytes() == expected_png(PRED[i])
    assert (folder / "panoptic_predictions.json").read_text() == expected_json([0, 1])  # rank order
    single = run(COCOPanopticEvaluator.from_dataset(dataset), [0, 1])
    plain_dir, plain = run_two_ranks(tmp_path, save=False)
    for r in results + plain:
        same_metrics(r["metrics"], single)
    assert not (plain_dir / "panoptic").exists()
