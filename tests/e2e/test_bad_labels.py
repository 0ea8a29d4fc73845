"""A mask with a label beyond NUM_CLASSES (issue 18, point 7): training stops with one line, check_dataset finds it."""

import os
import shutil

import cv2
from script_runner import run_script

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOY_CONFIG = os.path.join(REPO, "configs", "toy", "semantic-segmentation", "semantic_fpn_R18_toy.yaml")
FAST = ["SOLVER.IMS_PER_BATCH", "4", "SOLVER.MAX_ITER", "4", "TEST.EVAL_PERIOD", "0", "DATALOADER.NUM_WORKERS", "2",
        "MODEL.SEM_SEG_HEAD.CONVS_DIM", "32", "MODEL.SEM_SEG_HEAD.HEAD_DIM", "32"]  # fmt: skip


def test_out_of_range_label_is_one_line_in_training_and_found_by_check_dataset(train_net, toy_datasets, tmp_path):
    datasets = tmp_path / "datasets"
    shutil.copytree(toy_datasets, datasets)
    mask_path = sorted((datasets / "toy" / "ADEChallengeData2016" / "annotations" / "training").glob("*.png"))[0]
    mask = cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED)
    mask[:] = 200  # raw ADE convention: 200 is label 199 once the zero label is reduced
    assert cv2.imwrite(str(mask_path), mask)
    env = {"DETECTRON2_DATASETS": str(datasets)}

    proc = train_net("--config-file", TOY_CONFIG, *FAST, "OUTPUT_DIR", str(tmp_path / "o"), check=False, env=env)
    assert proc.returncode == 1, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr[-2000:]
    line = lines[0]
    assert line.startswith(f"error: {mask_path}: label 199") and "NUM_CLASSES 6" in line and "fix" in line

    check = run_script(
        [os.path.join(REPO, "tools", "check_dataset.py"), "toy_sem_seg_train", "--no-progress"],
        env={**os.environ, **env, "OMP_NUM_THREADS": "1"},
        cwd=REPO,
        timeout=300,
    )
    assert check.returncode == 1
    assert "label_out_of_range: 1" in check.stdout and f"{mask_path}: labels 199" in check.stdout
