"""The shipped toy instance config trains through its evaluations with the TensorBoard panels on (issue 24: it died
at its first evaluation, iteration 150, with KeyError: 'sem_seg_file_name', as its split has no semantic maps).

The schedule is shortened by MAX_ITER / EVAL_PERIOD alone, so a periodic evaluation (with panels) comes before the
final one; TEST.VIS_IMAGES and everything else stay as shipped, but for the toy images' small size."""

import os

import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(REPO, "configs", "toy", "instance-segmentation", "mask2former_R18_toy_instance.yaml")
SHORT = ["SOLVER.MAX_ITER", "4", "TEST.EVAL_PERIOD", "2", "SOLVER.IMS_PER_BATCH", "2", "DATALOADER.NUM_WORKERS", "0",
         "INPUT.CROP.SIZE", "[64, 64]", "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MIN_SIZE_TEST", "64"]  # fmt: skip


def test_toy_instance_config_evaluates_and_draws_panels(train_net, toy_datasets, tmp_path):
    out = tmp_path / "run"
    proc = train_net("--config-file", CONFIG, *SHORT, "OUTPUT_DIR", str(out))
    log = proc.stdout + proc.stderr
    assert log.count("Evaluation on toy_instance_val (segm): AP=") == 2  # after iteration 2 and at the end
    with open(out / "config.yaml") as f:
        vis_images = yaml.safe_load(f)["TEST"]["VIS_IMAGES"]
    assert vis_images > 0  # the shipped value: panels are on
    events = EventAccumulator(str(out), size_guidance={"images": 0})
    events.Reload()
    tags = sorted(events.Tags()["images"])
    assert len(tags) == min(vis_images, 4) and all(t.startswith("val_panels/toy_val_") for t in tags)
    assert {tag: len(events.Images(tag)) for tag in tags} == {tag: 2 for tag in tags}  # one per evaluation
