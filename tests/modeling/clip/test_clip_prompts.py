"""FreeSeg's prompts: the learned sequence in FreeSeg's order, its initialisations, the cache, the template variant,
and loading a prompt from a checkpoint."""

import math

import pytest
import torch
import torch.nn.functional as F

from freemask.config import ConfigError, get_cfg
from freemask.modeling.clip import (
    TINY_CLIP_NAME,
    ClipError,
    LearnablePrompt,
    PredefinedPrompts,
    build_prompt_learner,
    load_prompt_checkpoint,
)

TASK = "panoptic segmentation."


def _learnable(clip, shape=(16, 0), task_length=8):
    torch.manual_seed(0)
    return LearnablePrompt(clip, clip.width, shape, task_length)


def test_sequence_order_lengths_and_end_index(tiny_clip):
    prompt = _learnable(tiny_clip, shape=(16, 2), task_length=8)
    names = ["sky", "traffic light"]
    embeds, ends = prompt.prompt_embeddings(names, TASK)
    assert embeds.shape == (2, 77, 64)
    word = {t: tiny_clip.word_ids(t) for t in [TASK, ".", *names]}
    table = tiny_clip.model.token_embedding.weight
    for row, name in enumerate(names):
        pieces = [
            table[word[TASK]],  # task-name words
            prompt.task_prompt,  # 8 task vectors
            table[[tiny_clip.sot_id]],  # the start token, after the task part (FreeSeg's order)
            prompt.prefix_prompt,  # 16 class-context vectors
            table[word[name]],  # class-name words
            prompt.suffix_prompt,  # PROMPT_SHAPE[1] suffix vectors, before the full stop
            table[word["."] + [tiny_clip.eot_id]],
        ]
        expected = torch.cat(pieces)
        length = len(word[TASK]) + 8 + 1 + 16 + len(word[name]) + 2 + 2
        assert expected.shape[0] == length and int(ends[row]) == length - 1
        torch.testing.assert_close(embeds[row, :length], expected)
        torch.testing.assert_close(embeds[row, length:], table[[0]].expand(77 - length, -1))  # padding: token 0
    assert int(ends[1]) - int(ends[0]) == len(word["traffic light"]) - len(word["sky"])


def test_initialisations_follow_freeseg(tiny_clip):
    prompt = LearnablePrompt(tiny_clip, 64, (16, 4), 200)
    assert prompt.prefix_prompt.std().item() == pytest.approx(0.02, rel=0.15)
    assert prompt.suffix_prompt.std().item() == pytest.approx(0.02, rel=0.3)
    # kaiming_normal_(a=2): std = sqrt(2 / (1 + a^2) / fan_in), fan_in = 64
    assert prompt.task_prompt.std().item() == pytest.approx(math.sqrt(0.4 / 64), rel=0.1)
    assert LearnablePrompt(tiny_clip, 64, (16, 0), 8).suffix_prompt is None
    assert sorted(n for n, _ in prompt.named_parameters()) == ["prefix_prompt", "suffix_prompt", "task_prompt"]


def test_features_are_normalised_and_gradients_reach_every_prompt_vector(tiny_clip):
    prompt = _learnable(tiny_clip, shape=(4, 2), task_length=3)
    prompt.train()
    features = prompt(["sky", "car"], TASK)
    assert features.shape == (2, 64)
    torch.testing.assert_close(features.norm(dim=-1), torch.ones(2))
    features[:, 0].sum().backward()
    for name, param in prompt.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    assert not torch.allclose(prompt(["sky"], "semantic segmentation."), features[:1])  # the task words matter


def test_too_long_prompt_names_the_class(tiny_clip):
    prompt = _learnable(tiny_clip)
    long_name = " ".join(["extraordinarily"] * 60)
    with pytest.raises(ClipError, match="class name 'extraordinarily extraordinarily.*more than CLIP's context"):
        prompt(["sky", long_name], TASK)


def test_prompt_width_must_match_clip(tiny_clip):
    with pytest.raises(ConfigError, match="PROMPT_DIM 512 differs from the token width 64"):
        LearnablePrompt(tiny_clip, 512)


def test_cache_when_frozen_or_evaluating_keyed_by_task(tiny_clip, monkeypatch):
    prompt = _learnable(tiny_clip)
    calls = []
    encode = tiny_clip.encode_embedded_text
    monkeypatch.setattr(tiny_clip, "encode_embedded_text", lambda e, i: calls.append(len(e)) or encode(e, i))
    prompt.train()
    prompt(["sky"], TASK)
    prompt(["sky"], TASK)
    assert calls == [1, 1]  # training a prompt: always recomputed
    prompt.eval()
    first = prompt(["sky", "car"], TASK)
    again = prompt(["car", "sky"], TASK)
    assert calls == [1, 1, 2] and torch.equal(again, first.flip(0))
    other_task = prompt(["sky"], "semantic segmentation.")
    assert calls == [1, 1, 2, 1] and not torch.allclose(other_task, first[:1])  # FreeSeg would reuse the first task's
    prompt.train()  # the parameters may change again: the cache is dropped
    prompt.eval()
    prompt(["sky"], TASK)
    assert calls[-1] == 1 and len(calls) == 5
    prompt.freeze()
    prompt.train()
    assert not any(p.requires_grad for p in prompt.parameters())
    prompt(["sky"], TASK)
    prompt(["sky"], TASK)
    assert len(calls) == 6  # frozen: cached even in training mode


def test_predefined_prompts_average_templates_and_ignore_the_task(tiny_clip):
    templates = ["a photo of a {}.", "a sculpture of a {}."]
    prompt = PredefinedPrompts(tiny_clip, templates)
    features = prompt(["cat", "road"], TASK)
    expected = sum(
        F.normalize(tiny_clip.model.encode_text(tiny_clip.tokenize([t.format(n) for n in ["cat", "road"]])))
        for t in templates
    )
    torch.testing.assert_close(features, F.normalize(expected / 2), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(prompt(["cat"], "semantic segmentation."), features[:1])
    assert prompt.frozen and not list(prompt.parameters())
    with pytest.raises(ConfigError, match="PREDEFINED_PROMPT_TEMPLATES"):
        PredefinedPrompts(tiny_clip, ["a photo"])
    with pytest.raises(ClipError, match="class name 'x x x"):
        prompt(["x " * 80], TASK)


def _cfg(**adapter):
    cfg = get_cfg()
    cfg.MODEL.CLIP_ADAPTER.CLIP_MODEL_NAME = TINY_CLIP_NAME
    cfg.MODEL.CLIP_ADAPTER.PROMPT_DIM = 64
    for key, value in adapter.items():
        setattr(cfg.MODEL.CLIP_ADAPTER, key, value)
    return cfg


def test_build_from_config_and_load_a_freeseg_style_checkpoint(tiny_clip, tmp_path):
    source = build_prompt_learner(_cfg(), tiny_clip)
    assert isinstance(source, LearnablePrompt) and not source.frozen
    assert source.prompt_shape == (16, 0) and source.task_prompt_length == 8
    # FreeSeg's stage-1 checkpoints hold clip_adapter.prompt_learner.* with its CLIP-derived buffers.
    state = {f"clip_adapter.prompt_learner.{k}": v.clone() for k, v in source.state_dict().items()}
    state["clip_adapter.prompt_learner.start_signal"] = torch.zeros(1, 64)
    state["clip_adapter.clip_model.ln_final.weight"] = torch.ones(64)
    path = tmp_path / "freeseg_stage1.pth"
    torch.save({"model": state}, path)
    loaded = build_prompt_learner(_cfg(PROMPT_CHECKPOINT=str(path)), tiny_clip)
    assert loaded.frozen and not any(p.requires_grad for p in loaded.parameters())
    for name, value in source.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], value)
    assert isinstance(build_prompt_learner(_cfg(PROMPT_LEARNER="predefined"), tiny_clip), PredefinedPrompts)
    with pytest.raises(ConfigError, match="PROMPT_LEARNER must be"):
        build_prompt_learner(_cfg(PROMPT_LEARNER="clip"), tiny_clip)


def test_prompt_checkpoint_errors(tiny_clip, tmp_path):
    prompt = _learnable(tiny_clip)
    with pytest.raises(ClipError, match="prompt checkpoint not found; set MODEL.CLIP_ADAPTER.PROMPT_CHECKPOINT"):
        load_prompt_checkpoint(prompt, str(tmp_path / "missing.pth"))
    other = tmp_path / "other.pth"
    torch.save({"model": {"backbone.weight": torch.ones(1)}}, other)
    with pytest.raises(ClipError, match="holds no prompt_learner"):
        load_prompt_checkpoint(prompt, str(other))
    shorter = tmp_path / "shorter.pth"
    torch.save(
        {"model": {f"prompt_learner.{k}": v for k, v in _learnable(tiny_clip, (8, 0)).state_dict().items()}}, shorter
    )
    with pytest.raises(ClipError, match=r"prefix_prompt \(8, 64\) vs \(16, 64\).*PROMPT_SHAPE"):
        load_prompt_checkpoint(prompt, str(shorter))
    assert not prompt.frozen
    with pytest.raises(ConfigError, match="predefined prompt has nothing to load"):
        load_prompt_checkpoint(PredefinedPrompts(tiny_clip, ["a {}."]), str(shorter))
