"""The user's commands end to end on the toy dataset: train, evaluate, resume, multi-process, bad input."""

import json
import os
import shutil
import signal
import time

import pytest
import torch

from freemask.utils.forked_script import start_script

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOY_CONFIG = os.path.join(REPO, "configs", "toy", "semantic-segmentation", "semantic_fpn_R18_toy.yaml")
# A few iterations of the toy config, small enough for CI on two CPU cores.
FAST = [
    "SOLVER.IMS_PER_BATCH",
    "4",
    "SOLVER.MAX_ITER",
    "6",
    "SOLVER.CHECKPOINT_PERIOD",
    "3",
    "SOLVER.WARMUP_ITERS",
    "2",
    "TEST.EVAL_PERIOD",
    "0",
    "LOG_PERIOD",
    "1",
    "DATALOADER.NUM_WORKERS",
    "2",
    "MODEL.SEM_SEG_HEAD.CONVS_DIM",
    "32",
    "MODEL.SEM_SEG_HEAD.HEAD_DIM",
    "32",
]


def read_metrics(output_dir):
    with open(os.path.join(output_dir, "metrics.json")) as f:
        return [json.loads(line) for line in f]


def read_results(output_dir):
    with open(os.path.join(output_dir, "inference", "sem_seg_results.json")) as f:
        return json.load(f)


def trained_toy(trained_once, config=TOY_CONFIG):
    """The toy config trained with FAST and evaluated once for the whole run (read-only: copy it to change it)."""
    return trained_once(os.path.basename(config), "--config-file", config, "--num-gpus", "1", *FAST).output_dir


@pytest.mark.parametrize("config", [TOY_CONFIG, TOY_CONFIG.replace("semantic_fpn", "mask2former")])
def test_train_then_eval_only_reproduces_final_evaluation(train_net, trained_once, tmp_path, config):
    out = trained_toy(trained_once, config)
    files = set(os.listdir(out))
    assert {"config.yaml", "metrics.json", "last_checkpoint", "model_final.pth", "model_0000002.pth"} <= files
    assert any(f.startswith("events.out.tfevents") for f in files)
    assert open(os.path.join(out, "last_checkpoint")).read() == "model_final.pth"
    metrics = read_metrics(out)
    assert [m["iteration"] for m in metrics if "total_loss" in m] == list(range(6))
    assert all({"lr", "time", "data_time", "max_mem_mb"} <= set(m) for m in metrics if "total_loss" in m)
    trained = read_results(out)
    assert "sem_seg/mIoU" in metrics[-1] and abs(metrics[-1]["sem_seg/mIoU"] - trained["mIoU"]) < 1e-9

    evaluated = str(tmp_path / "eval")
    proc = train_net(
        "--config-file",
        config,
        "--eval-only",
        *FAST,
        "OUTPUT_DIR",
        evaluated,
        "MODEL.WEIGHTS",
        os.path.join(out, "model_final.pth"),
    )
    evaluated_results, final = read_results(evaluated), os.path.abspath(os.path.join(out, "model_final.pth"))
    # the same metrics, each file naming its producer: the training's final model, the same file evaluated
    weights = trained.pop("produced_by")["weights"]
    assert weights["path"] == final and evaluated_results.pop("produced_by")["weights"] == weights
    assert evaluated_results == trained
    assert f"mIoU={trained['mIoU']:.4g}" in proc.stdout


def test_resume_continues_with_the_same_losses(train_net, trained_once, tmp_path):
    # The shared run also evaluated after its last iteration; evaluation changes neither the weights nor the losses.
    reference = trained_toy(trained_once)
    # The state of a run killed during iteration 4: its last checkpoint is the one saved after iteration 2.
    interrupted = str(tmp_path / "interrupted")
    shutil.copytree(reference, interrupted)
    os.remove(os.path.join(interrupted, "model_final.pth"))
    with open(os.path.join(interrupted, "last_checkpoint"), "w") as f:
        f.write("model_0000002.pth")
    with open(os.path.join(interrupted, "metrics.json"), "w") as f:
        f.writelines(json.dumps(m) + "\n" for m in read_metrics(reference)[:3])
    proc = train_net("--config-file", TOY_CONFIG, "--resume", *FAST, "OUTPUT_DIR", interrupted, "DATASETS.TEST", "()")
    assert "Resuming at iteration 3" in proc.stdout
    resumed = read_metrics(interrupted)
    assert [m["iteration"] for m in resumed] == list(range(6))
    for ref, res in zip(read_metrics(reference)[3:], resumed[3:]):
        assert res["loss_sem_seg"] == ref["loss_sem_seg"] and res["lr"] == ref["lr"]
    final_ref = torch.load(os.path.join(reference, "model_final.pth"), weights_only=True)["model"]
    final_res = torch.load(os.path.join(interrupted, "model_final.pth"), weights_only=True)["model"]
    assert all(torch.equal(final_ref[k], final_res[k]) for k in final_ref)


def test_two_process_gloo_joint_training(train_net, tmp_path):
    out = str(tmp_path / "ddp")
    joint_config = TOY_CONFIG.replace(".yaml", "_joint.yaml")
    proc = train_net("--config-file", joint_config, "--num-gpus", "2", *FAST, "OUTPUT_DIR", out, "SOLVER.MAX_ITER", "3")
    assert os.path.isfile(os.path.join(out, "model_final.pth")) and os.path.isfile(os.path.join(out, "log.txt.rank1"))
    assert "Rank 0 of 2" in proc.stdout
    assert "2 of 4 images per global batch synthetic" in proc.stdout
    assert 0.0 <= read_results(out)["mIoU"] <= 100.0


def test_bad_config_key_is_one_line(train_net):
    proc = train_net("--config-file", TOY_CONFIG, "SOLVER.BASE_LR_TYPO", "1", check=False)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert lines == ["error: command line: unknown config key SOLVER.BASE_LR_TYPO; did you mean SOLVER.BASE_LR?"]


def test_corrupt_checkpoint_is_one_line(train_net, tmp_path):
    corrupt = tmp_path / "model.pth"
    corrupt.write_bytes(b"PK\x03\x04 not really a checkpoint")
    proc = train_net(
        "--config-file",
        TOY_CONFIG,
        "--eval-only",
        *FAST,
        "OUTPUT_DIR",
        str(tmp_path / "o"),
        "MODEL.WEIGHTS",
        str(corrupt),
        check=False,
    )
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(corrupt) in lines[0] and "corrupt" in lines[0]


def test_torchrun_two_processes(train_net, tmp_path):
    out = str(tmp_path / "torchrun")
    proc = train_net(
        "--config-file",
        TOY_CONFIG,
        *FAST,
        "OUTPUT_DIR",
        out,
        "SOLVER.MAX_ITER",
        "3",
        "DATALOADER.NUM_WORKERS",
        "0",
        launcher=["-m", "torch.distributed.run", "--nproc-per-node", "2"],
    )
    assert "Rank 0 of 2" in proc.stdout and os.path.isfile(os.path.join(out, "log.txt.rank1"))
    assert [m["iteration"] for m in read_metrics(out) if "loss_sem_seg" in m] == [0, 1, 2]


def test_truncated_image_in_a_worker_is_one_line(train_net, toy_datasets, tmp_path):
    datasets = tmp_path / "datasets"
    shutil.copytree(toy_datasets, datasets)
    image = next((datasets / "toy" / "ADEChallengeData2016" / "images" / "training").glob("*.jpg"))
    image.write_bytes(image.read_bytes()[:300])
    proc = train_net(
        "--config-file",
        TOY_CONFIG,
        *FAST,
        "OUTPUT_DIR",
        str(tmp_path / "o"),
        check=False,
        env={"DETECTRON2_DATASETS": str(datasets)},
    )
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(image) in lines[0] and "truncated" in lines[0]


def test_custom_dataset_from_config_alone(train_net, toy_datasets, tmp_path):
    classes = tmp_path / "classes.txt"
    classes.write_text("sky\ngrass\nroad\nbuilding\ncar\nperson\n")
    out = str(tmp_path / "custom")
    root = os.path.join(toy_datasets, "toy", "ADEChallengeData2016")
    train_net(
        "--config-file", TOY_CONFIG, *FAST, "OUTPUT_DIR", out, "SOLVER.MAX_ITER", "2",
        "DATASETS.CUSTOM.NAME", "mydata", "DATASETS.CUSTOM.ROOT", root, "DATASETS.CUSTOM.CLASSES_FILE", str(classes),
        "DATASETS.CUSTOM.REDUCE_ZERO_LABEL", "True",
        "DATASETS.TRAIN", "('mydata_sem_seg_train',)", "DATASETS.TEST", "('mydata_sem_seg_val',)",
    )  # fmt: skip
    assert "IoU-person" in read_results(out)


def one_error_line(proc):
    assert proc.returncode == 1, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
    return lines[0]


def test_bad_pretrained_weight_file_is_one_line(train_net, tmp_path):
    bad = tmp_path / "resnet18.pth"
    bad.write_bytes(b"not a weight file")
    proc = train_net(
        "--config-file", TOY_CONFIG, *FAST, "OUTPUT_DIR", str(tmp_path / "o"), "MODEL.BACKBONE.PRETRAINED", str(bad),
        check=False,
    )  # fmt: skip
    assert str(bad) in one_error_line(proc)


def test_mistyped_config_path_gets_a_did_you_mean_before_torch(train_net):
    proc = train_net("--config-file", "configs/toy/semantic-segmentation/semantic_fpn_R18_toyy.yaml", check=False)
    line = one_error_line(proc)
    assert "configs/toy/semantic-segmentation/semantic_fpn_R18_toyy.yaml: config file not found" in line
    assert line.endswith("did you mean configs/toy/semantic-segmentation/semantic_fpn_R18_toy.yaml?")


def test_unwritable_output_dir_is_one_line_before_the_model_is_built(train_net, tmp_path):
    (tmp_path / "a_file").write_text("")
    out = tmp_path / "a_file" / "run"
    proc = train_net("--config-file", TOY_CONFIG, *FAST, "OUTPUT_DIR", str(out), check=False)
    line = one_error_line(proc)
    assert line.startswith(f"error: OUTPUT_DIR {out}: ") and "is a file" in line
    assert "parameters" not in proc.stdout  # the model ("Model SemanticFPN: ...M parameters") was never built


def test_missing_dataset_is_one_line_before_the_model_is_built(train_net, tmp_path):
    empty = tmp_path / "no_datasets"
    empty.mkdir()
    proc = train_net(
        "--config-file", TOY_CONFIG, *FAST, "OUTPUT_DIR", str(tmp_path / "o"), check=False,
        env={"DETECTRON2_DATASETS": str(empty)},
    )  # fmt: skip
    assert str(empty) in one_error_line(proc)
    assert "parameters" not in proc.stdout and not (tmp_path / "o").exists()


def ctrl_c_after_iteration_two(toy_datasets, out, *extra):
    """Run train_net.py, press Ctrl-C once iteration 2 is logged; (exit code, stderr lines)."""
    env = {**os.environ, "DETECTRON2_DATASETS": toy_datasets, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    command = [os.path.join(REPO, "train_net.py"), "--config-file", TOY_CONFIG, *extra, *FAST]
    command += ["OUTPUT_DIR", str(out), "SOLVER.MAX_ITER", "100000", "SOLVER.CHECKPOINT_PERIOD", "100000"]
    stdout, stderr = out.parent / "stdout.txt", out.parent / "stderr.txt"
    stdout.touch()
    # Its own process group: Ctrl-C in a terminal signals the whole group, DataLoader workers included.
    proc = start_script(command, stdout=str(stdout), stderr=str(stderr), env=env, cwd=REPO, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while proc.poll() is None and "iter: 2 " not in stdout.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, stderr.read_text()


@pytest.mark.parametrize("processes", [[], ["--num-gpus", "2"]], ids=["one process", "two processes"])
def test_ctrl_c_saves_a_checkpoint_and_prints_how_to_resume(toy_datasets, tmp_path, processes):
    out = tmp_path / "run"
    code, stderr = ctrl_c_after_iteration_two(toy_datasets, out, *processes)
    assert code == 130 and "Traceback" not in stderr, stderr[-3000:]
    lines = [line for line in stderr.strip().splitlines() if "Terminating process" not in line]  # torch's spawn log
    assert len(lines) == 1 and lines[0].startswith("interrupted after iteration "), stderr[-3000:]
    saved = open(out / "last_checkpoint").read()
    assert f"checkpoint saved to {out / saved}; resume (at iteration " in lines[0] and "--resume" in lines[0]
    iteration = torch.load(out / saved, weights_only=True)["iteration"]
    assert lines[0].startswith(f"interrupted after iteration {iteration};") and iteration >= 2
    assert f"; resume (at iteration {iteration + 1}) with: python " in lines[0]
    assert saved == f"model_{iteration:07d}.pth"
    assert not list(out.glob("*.tmp*"))


def test_eval_only_keeps_the_training_config_and_says_it_appends(train_net, trained_once, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(trained_toy(trained_once), out)  # a training run's folder, evaluated again in place
    trained = (out / "config.yaml").read_text()
    proc = train_net(
        "--config-file", TOY_CONFIG, "--eval-only", *FAST, "OUTPUT_DIR", str(out),
        "MODEL.WEIGHTS", str(out / "model_final.pth"), "TEST.AUG.FLIP", "False",
    )  # fmt: skip
    assert (out / "config.yaml").read_text() == trained
    assert "FLIP: false" in (out / "config_eval.yaml").read_text() and "FLIP: false" not in trained
    assert f"OUTPUT_DIR {out} already holds log.txt and metrics.json of an earlier run" in proc.stdout
