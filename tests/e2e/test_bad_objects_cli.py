"""An invalid RLE in the toy instance split (issue 24: a 52-line ``ValueError: Invalid RLE mask representation``
traceback that named no file): train_net.py stops with one line naming the annotation file; no file is modified."""

import hashlib
import json
import os
import shutil

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(REPO, "configs", "toy", "instance-segmentation", "mask2former_R18_toy_instance.yaml")
FAST = ["SOLVER.IMS_PER_BATCH", "8", "SOLVER.MAX_ITER", "2", "TEST.EVAL_PERIOD", "0", "DATALOADER.NUM_WORKERS", "2",
        "INPUT.CROP.SIZE", "[64, 64]", "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MIN_SIZE_TEST", "64"]  # fmt: skip


def test_invalid_rle_is_one_line_naming_the_json(train_net, toy_datasets, tmp_path):
    datasets = tmp_path / "datasets"
    shutil.copytree(toy_datasets, datasets)
    json_file = datasets / "toy" / "ADEChallengeData2016" / "ade20k_instance_train.json"
    data = json.loads(json_file.read_text())
    annotation = next(a for a in data["annotations"] if not a.get("iscrowd", 0))
    annotation["segmentation"] = {"size": [64, 64], "counts": "abc"}  # pycocotools: "Invalid RLE mask representation"
    json_file.write_text(json.dumps(data))
    before = hashlib.sha256(json_file.read_bytes()).hexdigest()

    env = {"DETECTRON2_DATASETS": str(datasets)}
    proc = train_net("--config-file", CONFIG, *FAST, "OUTPUT_DIR", str(tmp_path / "o"), check=False, env=env)
    assert proc.returncode == 1, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr[-2000:]
    assert lines[0].startswith(f"error: {json_file}: annotation {annotation['id']} of image ")
    assert "invalid RLE" in lines[0] and "SKIP_BAD_SAMPLES" in lines[0]
    assert hashlib.sha256(json_file.read_bytes()).hexdigest() == before
