import json
import math
import os
import shutil
import signal
import subprocess
import sys

import pytest
import torch

from freemask import cli
from freemask.config import ConfigError, get_cfg
from freemask.engine.trainer import Trainer, iteration_seed
from freemask.errors import TrainingInterrupted, UserError


def toy_cfg(output_dir):
    cfg = get_cfg()
    cfg.merge_from_file(
        os.path.join(
            os.path.dirname(__file__), "..", "..", "configs", "toy", "semantic-segmentation",
            "semantic_fpn_R18_toy.yaml",
        )
    )
    cfg.merge_from_list(
        [
            "MODEL.DEVICE",
            "cpu",
            "SOLVER.IMS_PER_BATCH",
            "2",
            "SOLVER.MAX_ITER",
            "6",
            "SOLVER.CHECKPOINT_PERIOD",
            "2",
            "DATALOADER.NUM_WORKERS",
            "0",
            "DATASETS.TEST",
            "()",
            "MODEL.SEM_SEG_HEAD.CONVS_DIM",
            "32",
            "MODEL.SEM_SEG_HEAD.HEAD_DIM",
            "32",
            "OUTPUT_DIR",
            str(output_dir),
            "LOG_PERIOD",
            "1",
        ]
    )
    return cfg


def test_nan_loss_stops_training_and_keeps_last_good_checkpoint(toy_datasets, tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", toy_datasets)
    trainer = Trainer(toy_cfg(tmp_path))
    forward = trainer.model.forward
    calls = []

    def nan_at_iteration_three(batch):
        calls.append(1)
        losses = forward(batch)
        return {k: v * float("nan") for k, v in losses.items()} if len(calls) == 4 else losses

    monkeypatch.setattr(trainer.model, "forward", nan_at_iteration_three)
    with pytest.raises(FloatingPointError, match="at iteration 3") as error:
        trainer.train()
    assert str(tmp_path) in str(error.value) and "\n" not in str(error.value)
    assert open(tmp_path / "last_checkpoint").read() == "model_0000001.pth"
    saved = torch.load(tmp_path / "model_0000001.pth", weights_only=True)
    assert saved["iteration"] == 1 and not (tmp_path / "model_0000003.pth").exists()
    assert all(torch.isfinite(v).all() for v in saved["model"].values() if v.is_floating_point())


def test_iteration_seeds_differ_by_iteration_and_rank():
    seeds = {iteration_seed(42, it, rank) for it in range(100) for rank in range(8)}
    assert len(seeds) == 800


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_amp_training_steps(toy_datasets, tmp_path, monkeypatch, dtype):
    monkeypatch.setenv("DETECTRON2_DATASETS", toy_datasets)
    cfg = toy_cfg(tmp_path)
    cfg.merge_from_list(["SOLVER.AMP.ENABLED", "True", "SOLVER.AMP.DTYPE", dtype, "SOLVER.MAX_ITER", "1"])
    trainer = Trainer(cfg)
    assert trainer.scaler.is_enabled() == (dtype == "float16")  # bf16 needs no loss scaling
    logits_dtypes = []
    trainer.model.sem_seg_head.predictor.register_forward_hook(lambda m, i, out: logits_dtypes.append(out.dtype))
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train()
    after = trainer.model.state_dict()
    assert logits_dtypes and set(logits_dtypes) == {getattr(torch, dtype)}  # the forward ran under autocast
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert open(tmp_path / "last_checkpoint").read() == "model_final.pth"
    if dtype == "float16":
        assert "grad_scaler" in torch.load(tmp_path / "model_final.pth", weights_only=True)


def test_nan_before_any_checkpoint_says_none_was_saved(toy_datasets, tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", toy_datasets)
    trainer = Trainer(toy_cfg(tmp_path))
    forward = trainer.model.forward
    nan_losses = lambda batch: {k: v * float("nan") for k, v in forward(batch).items()}  # noqa: E731
    monkeypatch.setattr(trainer.model, "forward", nan_losses)
    with pytest.raises(FloatingPointError, match="at iteration 0") as error:
        trainer.train()
    assert "intact" not in str(error.value) and "no checkpoint was saved" in str(error.value)
    assert isinstance(error.value, UserError)


def test_ctrl_c_saves_the_iteration_it_finished_and_resume_continues(toy_datasets, tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", toy_datasets)
    trainer = Trainer(toy_cfg(tmp_path))  # MAX_ITER 6, a checkpoint every 2 iterations (after 1, 3, 5)
    step = trainer.run_step

    def ctrl_c_during_iteration_three(data_iter, iteration, storage):
        step(data_iter, iteration, storage)
        if iteration == 3:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(trainer, "run_step", ctrl_c_during_iteration_three)
    try:
        with pytest.raises(TrainingInterrupted) as error:
            trainer.train()
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C escaped as a KeyboardInterrupt traceback")
    message = str(error.value)
    assert "\n" not in message and error.value.exit_code == 130
    # One numbering, the log's (iterations from 0): iteration 4 finished, model_0000004.pth, resuming at 5.
    assert message.startswith(f"interrupted after iteration 4; checkpoint saved to {tmp_path / 'model_0000004.pth'};")
    assert "; resume (at iteration 5) with: python " in message and "--resume" in message
    assert open(tmp_path / "last_checkpoint").read() == "model_0000004.pth"
    assert torch.load(tmp_path / "model_0000004.pth", weights_only=True)["iteration"] == 4
    assert not (tmp_path / "model_final.pth").exists() and not list(tmp_path.glob("*.tmp*"))

    resumed = Trainer(toy_cfg(tmp_path))
    resumed.resume_or_load(resume=True)
    assert resumed.start_iter == 5
    resumed.train()
    assert open(tmp_path / "last_checkpoint").read() == "model_final.pth"


def test_resume_after_the_last_iteration_still_writes_the_final_model_and_evaluation(
    toy_datasets, tmp_path, monkeypatch
):
    monkeypatch.setenv("DETECTRON2_DATASETS", toy_datasets)
    cfg = toy_cfg(tmp_path)
    cfg.merge_from_list(["DATASETS.TEST", "('toy_sem_seg_val',)", "TEST.EVAL_PERIOD", "0"])
    finished = Trainer(cfg)
    finished.train()
    final = torch.load(tmp_path / "model_final.pth", weights_only=True)
    # The state of a run killed while writing model_final.pth: the periodic checkpoint of the last iteration is the
    # last one, and the final evaluation never ran.
    os.remove(tmp_path / "model_final.pth")
    shutil.rmtree(tmp_path / "inference")
    (tmp_path / "last_checkpoint").write_text("model_0000005.pth")

    resumed = Trainer(cfg)
    resumed.resume_or_load(resume=True)
    assert resumed.start_iter == 6
    results = resumed.train()
    assert "mIoU" in results["sem_seg"] and (tmp_path / "inference" / "sem_seg_results.json").is_file()
    saved = torch.load(tmp_path / "model_final.pth", weights_only=True)
    assert saved["iteration"] == 5 and open(tmp_path / "last_checkpoint").read() == "model_final.pth"
    assert all(torch.equal(saved["model"][k], final["model"][k]) for k in final["model"])


def test_stale_temporary_checkpoints_are_removed_at_start(toy_datasets, tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", toy_datasets)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".model_0000003.pth.{int(dead.stdout)}.tmp"
    stale_pointer = tmp_path / f".last_checkpoint.{int(dead.stdout)}.tmp"
    live = tmp_path / f".model_0000003.pth.{os.getppid()}.tmp"  # a save still running in another process
    for path in (stale, stale_pointer, live, tmp_path / "notes.1.tmp"):
        path.write_bytes(b"partial")
    Trainer(toy_cfg(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir() if "tmp" in p.name) == sorted([live.name, "notes.1.tmp"])


def test_bad_amp_dtype_is_a_config_error(toy_datasets, tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", toy_datasets)
    cfg = toy_cfg(tmp_path)
    cfg.merge_from_list(["SOLVER.AMP.DTYPE", "float8"])
    with pytest.raises(ConfigError, match="SOLVER.AMP.DTYPE must be bfloat16 or float16"):
        Trainer(cfg)


def test_build_model_logs_the_count_of_distinct_parameters(monkeypatch, caplog):
    shared = torch.nn.Linear(1000, 1000)  # 1,001,000 parameters, used twice: counted once
    monkeypatch.setattr("freemask.engine.trainer.build_model", lambda cfg: torch.nn.Sequential(shared, shared))
    cfg = get_cfg()
    with caplog.at_level("INFO", logger="freemask.engine.trainer"):
        Trainer.build_model(cfg)
    assert f"Model {cfg.MODEL.META_ARCHITECTURE}: 1.00M parameters" in caplog.messages


def test_a_second_ctrl_c_stops_at_once_with_one_line_and_the_last_checkpoint_resumes(
    toy_datasets, tmp_path, monkeypatch
):
    monkeypatch.setenv("DETECTRON2_DATASETS", toy_datasets)
    trainer = Trainer(toy_cfg(tmp_path))  # checkpoints after iterations 1, 3, 5
    step = trainer.run_step

    def ctrl_c_twice_during_iteration_four(data_iter, iteration, storage):
        if iteration == 4:
            os.kill(os.getpid(), signal.SIGINT)  # a stop request: finish this iteration, save, stop
            os.kill(os.getpid(), signal.SIGINT)  # the user does not want to wait
        step(data_iter, iteration, storage)

    monkeypatch.setattr(trainer, "run_step", ctrl_c_twice_during_iteration_four)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # a user's process, not pytest's handler
    try:
        with pytest.raises(TrainingInterrupted) as error:
            trainer.train()
    except KeyboardInterrupt:
        pytest.fail("the second Ctrl-C escaped as a KeyboardInterrupt traceback")
    finally:
        signal.signal(signal.SIGINT, previous)
    message = str(error.value)
    assert "\n" not in message and error.value.exit_code == 130
    assert message.startswith("interrupted at once (second Ctrl-C) after iteration 3, without saving a checkpoint;")
    assert f"the last checkpoint {tmp_path / 'model_0000003.pth'} is intact; resume with: python " in message
    assert open(tmp_path / "last_checkpoint").read() == "model_0000003.pth" and not list(tmp_path.glob("*.tmp*"))

    resumed = Trainer(toy_cfg(tmp_path))
    resumed.resume_or_load(resume=True)
    assert resumed.start_iter == 4


def test_a_full_disk_stops_with_one_line_keeps_the_last_checkpoint_and_resume_finishes(
    toy_datasets, tmp_path, monkeypatch, capsys
):
    """The save of model_0000003.pth goes to /dev/full, which answers every write with ENOSPC as a full disk."""
    monkeypatch.setenv("DETECTRON2_DATASETS", toy_datasets)
    real_open = open

    def full_disk_for_the_second_checkpoint(path, *args, **kwargs):
        return real_open("/dev/full" if "model_0000003.pth" in str(path) else path, *args, **kwargs)

    monkeypatch.setattr("freemask.utils.atomic.open", full_disk_for_the_second_checkpoint, raising=False)
    monkeypatch.setattr(sys, "argv", ["train_net.py", "--config-file", "c.yaml"])
    trainer = Trainer(toy_cfg(tmp_path))
    assert cli.run(trainer.train) == 1
    err = capsys.readouterr().err
    assert err == (
        f"error: cannot write {tmp_path / 'model_0000003.pth'}: No space left on device (ENOSPC); the last "
        f"checkpoint {tmp_path / 'model_0000001.pth'} is intact; free space in {tmp_path}, then resume with: "
        "python train_net.py --resume --config-file c.yaml\n"
    )
    assert open(tmp_path / "last_checkpoint").read() == "model_0000001.pth"
    assert torch.load(tmp_path / "model_0000001.pth", weights_only=True)["iteration"] == 1
    assert not (tmp_path / "model_0000003.pth").exists() and not list(tmp_path.glob("*.tmp*"))

    monkeypatch.undo()  # space freed
    monkeypatch.setenv("DETECTRON2_DATASETS", toy_datasets)
    resumed = Trainer(toy_cfg(tmp_path))
    resumed.resume_or_load(resume=True)
    assert resumed.start_iter == 2
    resumed.train()
    assert open(tmp_path / "last_checkpoint").read() == "model_final.pth"


class Killed(BaseException):
    """kill -9 of the training process, at a chosen point (nothing after it runs, no handler catches it)."""


def metrics_lines(output_dir):
    return [json.loads(line) for line in (output_dir / "metrics.json").read_text().splitlines()]


@pytest.mark.parametrize("moment", ["during the final save", "between a checkpoint and its metrics line"])
def test_metrics_json_has_every_logged_iteration_after_a_resume(toy_datasets, tmp_path, monkeypatch, moment):
    monkeypatch.setenv("DETECTRON2_DATASETS", toy_datasets)
    cfg = toy_cfg(tmp_path)  # 6 iterations, checkpoints after 1, 3, 5, a metrics line after every iteration
    trainer = Trainer(cfg)
    if moment == "during the final save":  # model_0000005.pth is complete, model_final.pth is being written
        save = trainer.checkpointer.save

        def killed_saving_the_final_model(name, **kwargs):
            if name == "model_final":
                raise Killed
            save(name, **kwargs)

        monkeypatch.setattr(trainer.checkpointer, "save", killed_saving_the_final_model)
        lost, resumes_at = 5, 6
    else:  # model_0000003.pth is complete, its metrics line not written yet
        from freemask.utils.events import JSONWriter

        write = JSONWriter.write

        def killed_before_writing_iteration_three(self, storage):
            if storage.iter == 3:
                raise Killed
            write(self, storage)

        monkeypatch.setattr(JSONWriter, "write", killed_before_writing_iteration_three)
        lost, resumes_at = 3, 4
    with pytest.raises(Killed):
        trainer.train()
    monkeypatch.undo()
    monkeypatch.setenv("DETECTRON2_DATASETS", toy_datasets)
    assert [line["iteration"] for line in metrics_lines(tmp_path)] == list(range(lost))

    resumed = Trainer(cfg)
    resumed.resume_or_load(resume=True)
    assert resumed.start_iter == resumes_at
    resumed.train()
    lines = metrics_lines(tmp_path)
    assert [line["iteration"] for line in lines] == list(range(6))
    restored = lines[lost]
    assert {"total_loss", "lr", "time"} <= set(restored) and all(math.isfinite(v) for v in restored.values())
    assert open(tmp_path / "last_checkpoint").read() == "model_final.pth"
