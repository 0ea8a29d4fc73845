"""OpenVocabulary (FreeSeg's stage 2) on a tiny model: one training step per task, frozen CLIP and stage-1 prompts,
the persistent task sequence, config errors, inference of all three tasks over a larger vocabulary, and the
engine's hand-over of the test set's vocabulary."""

import cv2
import numpy as np
import pytest
import torch

from freemask.config import ConfigError
from freemask.data import DatasetCatalog
from freemask.data.loading.build import build_train_loader
from freemask.data.mappers.all_task import AllTaskDatasetMapper
from freemask.data.mappers.semantic import SemSegDatasetMapper
from freemask.engine.evaluation import TestTimeModel, evaluation_model, panel_model
from freemask.evaluation.panels import prediction_panels
from freemask.modeling.inference import SegmentationInference
from freemask.modeling.open_vocab import TASK_NAMES, Vocabulary

SEMANTIC, INSTANCE, PANOPTIC = TASK_NAMES


def _spy_tasks(model):
    """Record the task of every text-feature request (one per interaction + decoder pass)."""
    seen = []
    text_features = model.text_features
    model.text_features = lambda vocabulary, task: seen.append(task) or text_features(vocabulary, task)
    return seen


@pytest.mark.parametrize("task", TASK_NAMES)
def test_one_training_step_per_task(task, open_vocab):
    model = open_vocab.model(open_vocab.cfg("INPUT.TASK_NAME", [task])).train()
    g = torch.Generator().manual_seed(0)
    captured = []
    criterion = model.criterion.forward
    model.criterion.forward = lambda outputs, targets: captured.append(targets) or criterion(outputs, targets)
    losses = model([open_vocab.sample(g), open_vocab.sample(g)])
    assert {"loss_ce", "loss_mask", "loss_dice", "loss_ce_2"} <= set(losses)
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    labels = [t["labels"].tolist() for t in captured[0]]
    assert labels == {SEMANTIC: [[0, 1, 2]] * 2, INSTANCE: [[1]] * 2, PANOPTIC: [[1, 2]] * 2}[task]
    clip = list(model.clip.parameters())
    assert clip and all(not p.requires_grad and p.grad is None for p in clip), "CLIP stays frozen"
    assert not model.clip.training, "CLIP stays in eval mode"
    assert all(p.grad is not None for p in model.prompt_learner.parameters()), "no checkpoint: prompts train"
    assert model.no_object_embedding.grad is not None and model.interaction.gamma.grad is not None


def test_task_targets_of_one_mapped_record(tmp_path, open_vocab):
    model = open_vocab.model(open_vocab.cfg())
    semantic = SemSegDatasetMapper(True, (64,), crop_size=None, flip=False, color_aug=False, num_classes=3)
    sample = AllTaskDatasetMapper(True, "semantic", semantic=semantic)(
        open_vocab.record(tmp_path), np.random.default_rng(0)
    )
    targets = {task: model._target(sample, task, (64, 96)) for task in TASK_NAMES}
    assert targets[SEMANTIC]["labels"].tolist() == [0, 1, 2], "one mask per class present, the crowd car included"
    assert targets[SEMANTIC]["masks"][1].sum() == 20 * 24 + 64
    assert targets[INSTANCE]["labels"].tolist() == [1], "the non-crowd things"
    assert targets[PANOPTIC]["labels"].tolist() == [0, 2, 1], "every non-crowd segment"
    assert all(t["masks"].shape[-2:] == (64, 96) and not t["masks"][..., 64:].any() for t in targets.values())


def test_ten_decoder_layers_train(open_vocab):
    model = open_vocab.model(open_vocab.cfg("MODEL.MASK_FORMER.DEC_LAYERS", 10, "INPUT.TASK_NAME", [PANOPTIC]))
    assert len(model.transformer_decoder.transformer_cross_attention_layers) == 10
    losses = model.train()([open_vocab.sample(torch.Generator().manual_seed(1))])
    assert "loss_dice_9" in losses and "loss_dice_10" not in losses and torch.isfinite(sum(losses.values()))


def test_stage_one_prompts_load_frozen(tmp_path, open_vocab):
    stage1 = open_vocab.model(open_vocab.cfg())
    with torch.no_grad():
        for p in stage1.prompt_learner.parameters():
            p.add_(1.0)
    path = tmp_path / "stage1.pth"
    torch.save({"model": {f"prompt_learner.{k}": v for k, v in stage1.prompt_learner.state_dict().items()}}, path)
    model = open_vocab.model(open_vocab.cfg("MODEL.CLIP_ADAPTER.PROMPT_CHECKPOINT", str(path))).train()
    for (name, loaded), trained in zip(model.prompt_learner.named_parameters(), stage1.prompt_learner.parameters()):
        assert torch.equal(loaded, trained), name
        assert not loaded.requires_grad
    sum(model([open_vocab.sample(torch.Generator().manual_seed(2))]).values()).backward()
    assert all(p.grad is None for p in model.prompt_learner.parameters())
    assert model.interaction.q_proj.weight.grad is not None


def test_the_task_sequence_is_seeded_and_resumes_from_the_saved_step(open_vocab):
    cfg = open_vocab.cfg("MODEL.MASK_FORMER.DEC_LAYERS", 1)
    model = open_vocab.model(cfg).train()
    tasks = _spy_tasks(model)
    g = torch.Generator().manual_seed(3)
    for _ in range(4):
        model([open_vocab.sample(g)])
    assert tasks == [model.task_sampler.task_at(i) for i in range(4)] and int(model.train_step) == 4
    resumed = open_vocab.model(cfg).train()
    resumed.load_state_dict(model.state_dict())
    resumed_tasks = _spy_tasks(resumed)
    resumed([open_vocab.sample(g)])
    assert resumed_tasks == [model.task_sampler.task_at(4)]


def test_a_sample_without_segments_trains_the_semantic_task(open_vocab):
    model = open_vocab.model(open_vocab.cfg("INPUT.TASK_NAME", [INSTANCE])).train()
    tasks = _spy_tasks(model)
    g = torch.Generator().manual_seed(4)
    losses = model([open_vocab.sample(g), open_vocab.sample(g, with_segments=False), open_vocab.sample(g)])
    assert tasks == [INSTANCE, SEMANTIC], "two groups, each with its own prompt, one criterion call"
    assert torch.isfinite(sum(losses.values()))


def test_config_mistakes_are_one_clear_error(open_vocab):
    with pytest.raises(ConfigError, match="NUM_CLASSES is 5 but .* names 3 training classes"):
        open_vocab.model(open_vocab.cfg("MODEL.SEM_SEG_HEAD.NUM_CLASSES", 5))
    open_vocab.register("test_open_vocab_other_train", ("sky", "road", "grass"), set())
    with pytest.raises(ConfigError, match="share one vocabulary"):
        open_vocab.model(open_vocab.cfg("DATASETS.TRAIN_SYN", ("test_open_vocab_other_train",)))
    with pytest.raises(ConfigError, match="EMBEDDING_DIM 32 must be the CLIP embedding width 64"):
        open_vocab.model(open_vocab.cfg("MODEL.SEM_SEG_HEAD.EMBEDDING_DIM", 32))
    with pytest.raises(ConfigError, match="EMB_SIZE 256"):
        open_vocab.model(open_vocab.cfg("MODEL.SEM_SEG_HEAD.EMB_SIZE", 256))


def _test_batch():
    g = torch.Generator().manual_seed(5)
    return [
        {"image": torch.randint(0, 256, (3, 64, 80), dtype=torch.uint8, generator=g), "height": 48, "width": 60},
        {"image": torch.randint(0, 256, (3, 50, 64), dtype=torch.uint8, generator=g), "height": 50, "width": 64},
    ]


def test_inference_of_all_tasks_over_a_larger_vocabulary(open_vocab):
    on = ["MODEL.MASK_FORMER.TEST.PANOPTIC_ON", True, "MODEL.MASK_FORMER.TEST.INSTANCE_ON", True]
    model = open_vocab.model(open_vocab.cfg(*on)).eval()
    vocabulary = Vocabulary(open_vocab.test_names, (True, True, True, False), (False, True, False, True))
    tasks = _spy_tasks(model)
    backbone_calls = []
    backbone = model.backbone.forward
    model.backbone.forward = lambda images: backbone_calls.append(images.shape) or backbone(images)
    with torch.no_grad():
        outputs = model(_test_batch(), vocabulary=vocabulary)
    assert tasks == [SEMANTIC, PANOPTIC, INSTANCE] and backbone_calls == [(2, 3, 64, 96)], "one backbone pass"
    for out, x in zip(outputs, _test_batch()):
        size = (x["height"], x["width"])
        assert out["sem_seg"].shape == (4, *size) and torch.isfinite(out["sem_seg"]).all()
        panoptic, segments = out["panoptic_seg"]
        assert panoptic.shape == size and {s["id"] for s in segments} == set(panoptic.unique().tolist()) - {0}
        assert all(s["isthing"] == (s["category_id"] in (1, 3)) for s in segments)
        instances = out["instances"]
        assert instances["pred_masks"].shape[1:] == size
        assert set(instances["pred_classes"].tolist()) <= {1, 3}, "instances are the vocabulary's things"
        assert 3 in instances["pred_classes"].tolist(), "the test-only class can be predicted"
    # The seen flags choose the ensemble's exponents; without the ensemble CLIP is not asked.
    flipped = Vocabulary(open_vocab.test_names, (False, False, False, True), vocabulary.thing)
    with torch.no_grad():
        other = model(_test_batch(), vocabulary=flipped)
        model.clip_ensemble = False
        plain = model(_test_batch(), vocabulary=vocabulary)
    assert not torch.allclose(other[0]["sem_seg"], outputs[0]["sem_seg"])
    assert not torch.allclose(plain[0]["sem_seg"], outputs[0]["sem_seg"])


def test_semantic_only_inference_defaults_to_the_training_vocabulary(open_vocab):
    model = open_vocab.model(open_vocab.cfg()).eval()
    tasks = _spy_tasks(model)
    with torch.no_grad():
        outputs = model(_test_batch())
    assert tasks == [SEMANTIC] and [set(o) for o in outputs] == [{"sem_seg"}] * 2
    assert outputs[0]["sem_seg"].shape == (3, 48, 60)
    with torch.no_grad():  # the FreeMask filter's entry: the mask classifier over the training vocabulary
        assert model.predict_log_probs(torch.zeros(1, 3, 64, 64)).shape == (1, 3, 64, 64)
    flipped = SegmentationInference(flip=True)
    with pytest.raises(ConfigError, match="whole-image only"):
        model(_test_batch(), inference=flipped)


def test_the_engine_hands_over_the_test_set_vocabulary(open_vocab):
    cfg = open_vocab.cfg("MODEL.MASK_FORMER.TEST.PANOPTIC_ON", True)
    model = open_vocab.model(cfg).eval()
    runner = evaluation_model(cfg, model, open_vocab.test_split)
    assert isinstance(runner, TestTimeModel)
    vocabulary, postprocess = runner.options["vocabulary"], runner.options["postprocess"]
    assert vocabulary.names == open_vocab.test_names and vocabulary.seen == (True, True, True, False)
    assert postprocess.thing_ids == (1, 3) and postprocess.panoptic_on
    with torch.no_grad():
        outputs = runner(_test_batch())
        panels = panel_model(cfg, model)(_test_batch())
    assert outputs[0]["sem_seg"].shape[0] == 4 and "panoptic_seg" in outputs[0]
    assert set(panels[0]) == {"sem_seg"} and panels[0]["sem_seg"].shape[0] == 4, "panels name the test classes"
    if "test_open_vocab_unnamed" not in DatasetCatalog:
        DatasetCatalog.register("test_open_vocab_unnamed", list)
    with pytest.raises(ConfigError, match="test_open_vocab_unnamed.*stuff_classes"):
        evaluation_model(cfg, model, "test_open_vocab_unnamed")


def test_a_joint_real_and_synthetic_batch_reaches_the_model(tmp_path, open_vocab):
    real = [open_vocab.record(tmp_path, f"real{i}") for i in range(2)]
    syn = [{k: r[k] for k in ("file_name", "sem_seg_file_name")} for r in real]  # semantic maps only
    open_vocab.register("test_open_vocab_joint_real", open_vocab.test_names[:3], {"car"}, real)
    open_vocab.register("test_open_vocab_joint_syn", open_vocab.test_names[:3], {"car"}, syn)
    cfg = open_vocab.cfg(
        *("DATASETS.TRAIN", ("test_open_vocab_joint_real",), "DATASETS.TRAIN_SYN", ("test_open_vocab_joint_syn",)),
        *("DATALOADER.SYN_RATIO", 0.5, "DATALOADER.NUM_WORKERS", 0, "SOLVER.IMS_PER_BATCH", 2),
        *(
            "INPUT.DATASET_MAPPER_NAME",
            "open_vocab_all_task",
            "INPUT.MIN_SIZE_TRAIN",
            (64,),
            "INPUT.CROP.SIZE",
            [64, 64],
        ),
        *("INPUT.TASK_NAME", [PANOPTIC], "MODEL.MASK_FORMER.DEC_LAYERS", 1),
    )
    batch = next(iter(build_train_loader(cfg)))
    assert sorted("instances" in x for x in batch) == [False, True], "one real and one synthetic sample"
    model = open_vocab.model(cfg).train()
    tasks = _spy_tasks(model)
    losses = model(batch)
    assert sorted(tasks) == sorted([PANOPTIC, SEMANTIC]) and torch.isfinite(sum(losses.values()))


def test_tensorboard_panels_draw_the_test_vocabulary(tmp_path, open_vocab):
    record = open_vocab.record(tmp_path)
    sem = cv2.imread(record["sem_seg_file_name"], cv2.IMREAD_UNCHANGED)
    sem[:4] = 3  # a "person" row: a class of the test vocabulary beyond the training one
    cv2.imwrite(record["sem_seg_file_name"], sem)
    names = open_vocab.test_names
    open_vocab.register("test_open_vocab_panels", names, {"car", "person"}, [record], trainable_flag=[1, 1, 1, 0])
    cfg = open_vocab.cfg("DATASETS.TEST", ("test_open_vocab_panels",))
    model = open_vocab.model(cfg)
    panels = prediction_panels(panel_model(cfg, model), cfg, "test_open_vocab_panels", 1)
    assert len(panels) == 1 and panels[0][1].ndim == 3 and model.training, "the model's mode is restored"
