import importlib

import pytest
import torch

import freemask.config.defaults
from freemask.config import ConfigError, get_cfg, resolve_device


def write(path, text):
    path.write_text(text)
    return str(path)


def test_defaults_are_complete_and_fresh():
    cfg = get_cfg()
    assert cfg.MODEL.DEVICE == "auto"
    assert cfg.INPUT.MIN_SIZE_TRAIN[0] == 256 and cfg.INPUT.MIN_SIZE_TRAIN[-1] == 1024
    cfg.SOLVER.BASE_LR = 3.0
    assert get_cfg().SOLVER.BASE_LR != 3.0  # every call returns a new copy


def test_base_inheritance_and_overrides(tmp_path):
    write(
        tmp_path / "base.yaml", "SOLVER:\n  BASE_LR: 0.5\n  MAX_ITER: 10\nMODEL:\n  SEM_SEG_HEAD:\n    NUM_CLASSES: 7\n"
    )
    child = write(tmp_path / "child.yaml", "_BASE_: base.yaml\nSOLVER:\n  MAX_ITER: 20\n")
    cfg = get_cfg()
    cfg.merge_from_file(child)
    assert (cfg.SOLVER.BASE_LR, cfg.SOLVER.MAX_ITER, cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES) == (0.5, 20, 7)
    cfg.merge_from_list(["SOLVER.MAX_ITER", "30", "DATASETS.TRAIN", "('a', 'b')"])
    assert cfg.SOLVER.MAX_ITER == 30 and tuple(cfg.DATASETS.TRAIN) == ("a", "b")


def test_list_of_bases_merges_in_order_then_the_file(tmp_path):
    write(tmp_path / "model.yaml", "SOLVER:\n  BASE_LR: 0.5\n  MAX_ITER: 10\n  WEIGHT_DECAY: 0.1\n")
    (tmp_path / "recipes").mkdir()
    write(tmp_path / "recipes" / "joint.yaml", "SOLVER:\n  MAX_ITER: 20\nDATALOADER:\n  SYN_RATIO: 0.5\n")
    child = write(tmp_path / "child.yaml", "_BASE_: [model.yaml, recipes/joint.yaml]\nSOLVER:\n  WEIGHT_DECAY: 0.2\n")
    cfg = get_cfg()
    cfg.merge_from_file(child)
    assert (cfg.SOLVER.BASE_LR, cfg.SOLVER.MAX_ITER, cfg.SOLVER.WEIGHT_DECAY) == (0.5, 20, 0.2)
    assert cfg.DATALOADER.SYN_RATIO == 0.5
    write(tmp_path / "bad.yaml", "_BASE_: [model.yaml, recipes/missing.yaml]\n")
    with pytest.raises(ConfigError, match="not found"):
        get_cfg().merge_from_file(str(tmp_path / "bad.yaml"))


def test_unknown_override_names_key_and_closest_valid_key():
    with pytest.raises(ConfigError) as e:
        get_cfg().merge_from_list(["SOLVER.BASE_LR_TYPO", "1"])
    message = str(e.value)
    assert "SOLVER.BASE_LR_TYPO" in message and "did you mean SOLVER.BASE_LR?" in message
    assert "\n" not in message


def test_unknown_key_in_file_names_file_and_key(tmp_path):
    path = write(tmp_path / "bad.yaml", "SOLVER:\n  MAX_ITR: 5\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown config key SOLVER.MAX_ITR; did you mean SOLVER.MAX_ITER"):
        get_cfg().merge_from_file(path)


def test_unknown_key_in_base_file_is_caught(tmp_path):
    write(tmp_path / "base.yaml", "INPUT:\n  CROPP:\n    SIZE: [1, 1]\n")
    child = write(tmp_path / "child.yaml", "_BASE_: base.yaml\n")
    with pytest.raises(ConfigError, match="INPUT.CROPP.SIZE"):
        get_cfg().merge_from_file(child)


def test_python_tags_are_refused(tmp_path):
    path = write(tmp_path / "evil.yaml", "SOLVER:\n  MAX_ITER: !!python/object/apply:os.getcwd []\n")
    with pytest.raises(ConfigError, match="python tags are refused"):
        get_cfg().merge_from_file(path)
    with pytest.raises(TypeError, match="allow_unsafe"):  # fvcore's switch to the unsafe loader does not exist here
        get_cfg().merge_from_file(path, allow_unsafe=True)


def test_type_mismatch_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="SOLVER.MAX_ITER"):
        get_cfg().merge_from_list(["SOLVER.MAX_ITER", "'many'"])
    with pytest.raises(ConfigError, match="not found"):
        get_cfg().merge_from_file(str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigError, match="has no value"):
        get_cfg().merge_from_list(["SOLVER.MAX_ITER"])


def test_option_after_the_overrides_is_named_as_misplaced():
    with pytest.raises(ConfigError, match="--resume is an option, not a config key; put options before"):
        get_cfg().merge_from_list(["SOLVER.MAX_ITER", "3", "--resume", "x"])


def test_shipped_configs_load(repo_root):
    for path in sorted((repo_root / "configs").rglob("*.yaml")):
        get_cfg().merge_from_file(str(path))


def test_yaml_error_in_a_base_file_names_that_file(tmp_path):
    write(tmp_path / "base.yaml", "SOLVER:\n  BASE_LR: [0.1\n")
    child = write(tmp_path / "child.yaml", "_BASE_: base.yaml\nSOLVER:\n  MAX_ITER: 10\n")
    with pytest.raises(ConfigError) as error:
        get_cfg().merge_from_file(child)
    message = str(error.value)
    assert message.startswith(f"{tmp_path / 'base.yaml'}: not a valid YAML config") and "line 3" in message
    assert "child.yaml" not in message


def test_missing_base_file_names_the_file_that_asks_for_it(tmp_path):
    child = write(tmp_path / "child.yaml", "_BASE_: ../Base-Missing.yaml\n")
    with pytest.raises(ConfigError, match=r"child.yaml: _BASE_ file .*Base-Missing.yaml not found"):
        get_cfg().merge_from_file(child)


def test_renamed_keys_are_read_under_their_new_names_with_a_warning(tmp_path, caplog):
    write(tmp_path / "base.yaml", "MODEL:\n  BACKBONE:\n    MIT:\n      VARIANT: b0\n")
    old_names = "MODEL:\n  SEGFORMER:\n    VARIANT: b4\n  SEMASK:\n    RESIDUAL: input\n"
    child = write(tmp_path / "child.yaml", "_BASE_: base.yaml\n" + old_names)
    cfg = get_cfg()
    with caplog.at_level("WARNING", logger="freemask.config.config"):
        cfg.merge_from_file(child)
    # the child's old name overrides the base's new name, as the same key would
    assert cfg.MODEL.BACKBONE.MIT.VARIANT == "b4" and cfg.MODEL.BACKBONE.SEMASK.RESIDUAL == "input"
    assert "VARIANT" not in cfg.MODEL.SEGFORMER and "RESIDUAL" not in cfg.MODEL.SEMASK  # dumps carry the new name
    (warning,) = caplog.messages
    assert "child.yaml" in warning and "MODEL.SEGFORMER.VARIANT -> MODEL.BACKBONE.MIT.VARIANT" in warning
    cfg.merge_from_list(["MODEL.SEMASK.WINDOW_SIZE", "5"])
    assert cfg.MODEL.BACKBONE.SEMASK.WINDOW_SIZE == 5 and "command line" in caplog.messages[-1]


def test_a_file_setting_a_key_under_both_names_is_refused(tmp_path):
    both = "MODEL:\n  SEGFORMER:\n    VARIANT: b1\n  BACKBONE:\n    MIT:\n      VARIANT: b2\n"
    path = write(tmp_path / "both.yaml", both)
    with pytest.raises(ConfigError, match="both.yaml: sets both MODEL.SEGFORMER.VARIANT and .*; keep only"):
        get_cfg().merge_from_file(path)


def test_the_defaults_dump_the_same_with_or_without_a_gpu(monkeypatch):
    dumps = []
    try:
        for visible in (True, False):
            monkeypatch.setattr(torch.cuda, "is_available", lambda visible=visible: visible)
            dumps.append(importlib.reload(freemask.config.defaults)._C.dump())
    finally:
        monkeypatch.undo()
        importlib.reload(freemask.config.defaults)
    assert dumps[0] == dumps[1] and "DEVICE: auto" in dumps[0]


@pytest.mark.parametrize("visible,expected", [(True, "cuda"), (False, "cpu")])
def test_auto_device_is_cuda_only_when_a_gpu_is_visible(monkeypatch, visible, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: visible)
    assert resolve_device(get_cfg()) == torch.device(expected)
    cfg = get_cfg()
    cfg.merge_from_list(["MODEL.DEVICE", "cpu"])
    assert resolve_device(cfg) == torch.device("cpu")  # an explicit device is kept as asked


def test_a_bad_device_names_the_key():
    cfg = get_cfg()
    cfg.MODEL.DEVICE = "gpu0"
    with pytest.raises(ConfigError, match="MODEL.DEVICE 'gpu0' is not a device; use auto, cpu"):
        resolve_device(cfg)
