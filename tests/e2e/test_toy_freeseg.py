"""FreeSeg's two stages on the toy open-vocabulary split (person and road unseen), with the tiny random CLIP, as the
README's commands run them: stage 1 learns the prompts, stage 2 loads them frozen through PROMPT_CHECKPOINT and
trains on the 4 seen classes, and --eval-only on all 6 reports mIoU, PQ and AP, each seen / unseen, from one run.
The numbers check the machinery, not generalisation (a random CLIP knows nothing of persons or roads)."""

import json
import os

import cv2
import numpy as np
import torch
from script_runner import run_script

from freemask.checkpoint import load_trained_model
from freemask.commands import demo as demo_command
from freemask.data.datasets.sem_seg import default_palette
from freemask.data.mappers.semantic import SemSegDatasetMapper, read_image
from freemask.engine.defaults import setup_cfg
from freemask.modeling.open_vocab import Vocabulary
from freemask.utils import visualizer as V

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FAST = ["TEST.VIS_IMAGES", "0", "DATALOADER.NUM_WORKERS", "0"]
STAGE2_FAST = ["SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "3", "TEST.EVAL_PERIOD", "0",
               "INPUT.CROP.SIZE", "[64, 64]", "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MIN_SIZE_TEST", "64",
               "MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD", "0.0", "MODEL.MASK_FORMER.TEST.OVERLAP_THRESHOLD",
               "0.0"]  # fmt: skip


def config(name):
    return os.path.join(REPO, "configs", "toy", "open-vocabulary", name)


def prompt_tensors(checkpoint):
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["model"]
    return {k.split("prompt_learner.", 1)[1]: v for k, v in state.items() if "prompt_learner." in k}


def test_stage1_then_stage2_then_eval_only_reports_seen_and_unseen(train_net, toy_datasets, tmp_path):
    stage1 = str(tmp_path / "stage1")
    train_net("--config-file", config("freeseg_toy_learn_prompt.yaml"), *FAST, "SOLVER.MAX_ITER", "4",
              "SOLVER.CHECKPOINT_PERIOD", "4", "SOLVER.IMS_PER_BATCH", "4", "OUTPUT_DIR", stage1)  # fmt: skip
    prompts = prompt_tensors(os.path.join(stage1, "model_final.pth"))
    assert prompts and all(v.dtype.is_floating_point for v in prompts.values())
    with open(os.path.join(stage1, "inference", "classification_results.json")) as f:
        assert {"ACC1", "ACC5"} <= set(json.load(f))

    stage2 = str(tmp_path / "stage2")
    checkpoint = os.path.join(stage1, "model_final.pth")
    trained_proc = train_net("--config-file", config("freeseg_R18_toy_alltask.yaml"), *FAST, *STAGE2_FAST,
                             "OUTPUT_DIR", stage2, "MODEL.CLIP_ADAPTER.PROMPT_CHECKPOINT", checkpoint)  # fmt: skip
    trained = prompt_tensors(os.path.join(stage2, "model_final.pth"))
    assert trained.keys() == prompts.keys()
    assert all(torch.equal(trained[k], prompts[k]) for k in prompts)  # frozen through stage 2

    evaluated = str(tmp_path / "eval")
    proc = train_net("--config-file", config("freeseg_R18_toy_alltask.yaml"), "--eval-only", *FAST, *STAGE2_FAST,
                     "OUTPUT_DIR", evaluated, "MODEL.WEIGHTS", os.path.join(stage2, "model_final.pth"))  # fmt: skip
    log = proc.stdout + proc.stderr
    for line in ("Evaluation on toy_ov_val: mIoU=", "mIoU_seen=", "mIoU_unseen=", "hIoU=", "(panoptic_seg): PQ=",
                 "PQ_seen=", "PQ_unseen=", "(segm): AP=", "AP_seen=", "AP_unseen="):  # fmt: skip
        assert line in log, line
    results = {}
    for name in ("sem_seg_results.json", "panoptic_results.json", "instance_results.json"):
        with open(os.path.join(evaluated, "inference", name)) as f:
            results.update(json.load(f))
    assert {"mIoU_seen", "mIoU_unseen", "hIoU", "PQ_seen", "PQ_unseen", "AP_seen", "AP_unseen"} <= set(results)
    # all six classes were scored: the per-class IoUs name the unseen ones too
    assert {"IoU-person", "IoU-road", "IoU-sky"} <= set(results)
    metrics = [json.loads(line) for line in open(os.path.join(stage2, "metrics.json"))]  # the training run's
    assert {"sem_seg/mIoU_seen", "panoptic_seg/PQ_seen"} <= set(metrics[-1])
    # FreeSeg's instance rule (a query kept only where the semantic map names its class, no top-k) may keep no query
    # of a 3-iteration model; AP is then NaN, which metrics.json leaves out
    no_instance = "No instance predicted" in trained_proc.stdout + trained_proc.stderr
    assert ("segm/AP_seen" in metrics[-1]) != no_instance


    # tools/demo.py --vocabulary: the trained model segments the classes typed, and the legend names them
    image_path = os.path.join(toy_datasets, "toy", "ADEChallengeData2016", "images", "validation", "toy_val_00001.jpg")
    typed = ["sky", "grass", "traffic cone"]
    weights = ["MODEL.WEIGHTS", os.path.join(stage2, "model_final.pth"), "MODEL.DEVICE", "cpu"]
    env = {**os.environ, "DETECTRON2_DATASETS": toy_datasets, "OMP_NUM_THREADS": "1"}
    demo_out = tmp_path / "demo"
    run_script(
        [os.path.join(REPO, "tools", "demo.py"),
         "--config-file", config("freeseg_R18_toy_alltask.yaml"),
         "--task", "semantic", "--vocabulary", ",".join(typed), "--input", image_path, "--output", str(demo_out),
         "--opacity", "1", "--no-progress", *weights],
        check=True, env=env, cwd=REPO,
    )  # fmt: skip
    figure = cv2.cvtColor(cv2.imread(str(demo_out / "toy_val_00001.png")), cv2.COLOR_BGR2RGB)
    cfg = setup_cfg(config("freeseg_R18_toy_alltask.yaml"), weights)
    model = load_trained_model(cfg, "test")
    image = read_image(image_path)
    mapped = demo_command.model_input(image, SemSegDatasetMapper.from_config(cfg, is_train=False))
    with torch.no_grad():
        scores = model([mapped], vocabulary=Vocabulary.from_names(typed))[0]["sem_seg"]
    assert scores.shape[0] == len(typed)  # one score map per typed class
    labels = scores.argmax(0).numpy()
    palette = default_palette(len(typed))
    expected = V.labelled_panels([image, V.blend(image, V.colorize(labels, palette), 1.0)], [labels], typed, palette)
    np.testing.assert_array_equal(figure, expected)  # legend included: the typed names of the classes drawn
