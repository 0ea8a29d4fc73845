"""Stage 1 (ProposalClipClassifier): one training step moves only the prompt, evaluation scores the test vocabulary,
and its checkpoint hands a frozen prompt to stage 2."""

import torch

from freemask.checkpoint import Checkpointer
from freemask.config import get_cfg
from freemask.data import MetadataCatalog
from freemask.engine.evaluation import build_evaluator
from freemask.evaluation import ClassificationEvaluator, inference_on_dataset
from freemask.modeling import build_model
from freemask.modeling.clip import TINY_CLIP_NAME, build_prompt_learner
from freemask.modeling.open_vocab import TASK_NAMES, Vocabulary
from freemask.solver import build_optimizer

TRAIN, TEST = "_clip_stage1_train", "_clip_stage1_val"
TRAIN_CLASSES = ["sky", "grass", "building", "car"]
TEST_CLASSES = ["sky", "grass", "person", "building", "car", "road"]
MetadataCatalog.get(TRAIN).set(stuff_classes=TRAIN_CLASSES, thing_classes=["car"])
MetadataCatalog.get(TEST).set(
    stuff_classes=TEST_CLASSES, trainable_flag=[1, 1, 0, 1, 1, 0], evaluator_type="classification"
)


def _cfg():
    cfg = get_cfg()
    cfg.MODEL.META_ARCHITECTURE = "ProposalClipClassifier"
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.CLIP_ADAPTER.CLIP_MODEL_NAME = TINY_CLIP_NAME
    cfg.MODEL.CLIP_ADAPTER.PROMPT_DIM = 64
    cfg.INPUT.TASK_NAME = list(TASK_NAMES)
    cfg.DATASETS.TRAIN = [TRAIN]
    cfg.DATASETS.TEST = [TEST]
    cfg.SEED = 5
    cfg.SOLVER.OPTIMIZER = "SGD"
    cfg.SOLVER.BASE_LR = 0.5
    cfg.SOLVER.WEIGHT_DECAY = 1e-3
    return cfg


def _model(cfg=None):
    torch.manual_seed(0)
    return build_model(cfg or _cfg())


def _batch(classes, size=64):
    generator = torch.Generator().manual_seed(1)
    batch = []
    for c in classes:
        mask = torch.zeros(1, size, size, dtype=torch.bool)
        mask[0, 8 + 4 * c : 40 + 4 * c, 10:50] = True
        image = torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=generator)
        batch.append(
            {
                "image": image,
                "instances": {"gt_masks": mask, "gt_classes": torch.tensor([c])},
                "file_name": f"img{c}.png",
                "height": size,
                "width": size,
            }
        )
    return batch


def test_one_training_step_changes_only_the_prompt():
    cfg = _cfg()
    model = _model(cfg)
    model.train()
    assert not model.clip.training
    optimizer = build_optimizer(cfg, model)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"prompt_learner.prefix_prompt", "prompt_learner.task_prompt"}
    assert {id(p) for g in optimizer.param_groups for p in g["params"]} == {
        id(p) for p in model.prompt_learner.parameters()
    }
    before = {k: v.clone() for k, v in model.state_dict().items()}
    losses = model(_batch([0, 3]))
    assert set(losses) == {"loss_cls"} and losses["loss_cls"].requires_grad
    optimizer.zero_grad()
    losses["loss_cls"].backward()
    optimizer.step()
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"prompt_learner.prefix_prompt", "prompt_learner.task_prompt"}


def test_evaluation_scores_the_test_vocabulary_and_feeds_the_evaluator(tmp_path):
    model = _model()
    model.eval()
    with torch.no_grad():
        outputs = model(_batch([0, 2]))
        typed = model(_batch([0]), vocabulary=Vocabulary.from_names(["cat", "dog", "traffic cone"]))
    assert [o["classification"].shape for o in outputs] == [(6,), (6,)]
    assert typed[0]["classification"].shape == (3,)
    assert model.task_of(_batch([0])) == "semantic segmentation."
    evaluator = build_evaluator(_cfg(), TEST, str(tmp_path))
    assert isinstance(evaluator, ClassificationEvaluator)
    results = inference_on_dataset(model, [_batch([0]), _batch([2, 5])], evaluator)
    metrics = results["classification"]
    assert 0 <= metrics["ACC1"] <= metrics["ACC5"] <= 100 and "ACC1_unseen" in metrics
    assert (tmp_path / "classification_results.json").is_file()


def test_stage1_checkpoint_gives_stage2_a_frozen_cached_prompt(tmp_path, monkeypatch):
    cfg = _cfg()
    model = _model(cfg)
    model.train()
    optimizer = build_optimizer(cfg, model)
    model(_batch([0, 1]))["loss_cls"].backward()
    optimizer.step()
    Checkpointer(model, str(tmp_path)).save("model_final")
    path = tmp_path / "model_final.pth"

    reloaded = _model(cfg)
    Checkpointer(reloaded, strict=True).load(str(path))  # what --eval-only does: every key fits
    torch.testing.assert_close(reloaded.prompt_learner.task_prompt, model.prompt_learner.task_prompt)

    stage2 = cfg.clone()
    stage2.MODEL.CLIP_ADAPTER.PROMPT_CHECKPOINT = str(path)
    prompt = build_prompt_learner(stage2, reloaded.clip)
    assert prompt.frozen and not any(p.requires_grad for p in prompt.parameters())
    for name, value in model.prompt_learner.state_dict().items():
        torch.testing.assert_close(prompt.state_dict()[name], value)
    calls = []
    encode = reloaded.clip.encode_embedded_text
    monkeypatch.setattr(reloaded.clip, "encode_embedded_text", lambda e, i: calls.append(len(e)) or encode(e, i))
    prompt.train()
    first = prompt(TEST_CLASSES, "instance segmentation.")
    second = prompt(TEST_CLASSES, "instance segmentation.")
    assert calls == [6] and torch.equal(first, second) and not first.requires_grad
    model.eval()
    with torch.no_grad():
        expected = model.prompt_learner(TEST_CLASSES, "instance segmentation.")
    torch.testing.assert_close(first, expected)
