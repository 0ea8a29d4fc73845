"""One base class for every user mistake, and its one-line rendering."""

import pytest

from freemask.checkpoint import CheckpointError
from freemask.config import ConfigError
from freemask.data.catalog import DatasetNotRegisteredError
from freemask.data.errors import DatasetError
from freemask.engine.trainer import LossNotFiniteError
from freemask.errors import (
    Interrupted,
    OutputNotWritableError,
    OutputWriteError,
    PathNotFoundError,
    UserError,
    check_writable_folder,
    one_line,
)
from freemask.modeling.backbone.weights import WeightFileError
from freemask.synthetic.class_loss import ClassLossError
from freemask.synthetic.filter.outputs import OutputStateError
from freemask.toy.defect_score import DefectScoreError
from freemask.toy.pipeline import PipelineError

ERRORS = [
    ConfigError,
    DatasetError,
    DatasetNotRegisteredError,
    CheckpointError,
    WeightFileError,
    ClassLossError,
    OutputStateError,
    DefectScoreError,
    PipelineError,
    LossNotFiniteError,
    PathNotFoundError,
    OutputNotWritableError,
    OutputWriteError,
    Interrupted,
]


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: e.__name__)
def test_every_tool_error_is_a_user_error_with_its_plain_message(error):
    assert issubclass(error, UserError)
    assert str(error("a.yaml: the fix")) == "a.yaml: the fix"  # also for the KeyError one: not quoted


def test_old_bases_still_catch_them():
    assert issubclass(DatasetNotRegisteredError, KeyError) and issubclass(PathNotFoundError, FileNotFoundError)
    assert issubclass(LossNotFiniteError, FloatingPointError) and issubclass(ConfigError, ValueError)


def test_one_line_of_an_error_re_raised_by_a_dataloader_worker():
    wrapped = DatasetError(
        "Caught DatasetError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
        '  File "x.py", line 1, in f\nfreemask.data.errors.DatasetError: a.jpg: truncated; remove it\n'
    )
    assert one_line(wrapped) == "a.jpg: truncated; remove it"
    assert one_line(DatasetNotRegisteredError("dataset 'x' is not registered")) == "dataset 'x' is not registered"


def test_writable_folder_check(tmp_path, monkeypatch):
    check_writable_folder(str(tmp_path / "new" / "deeper"), "OUTPUT_DIR")  # creatable: fine, and not created
    assert not (tmp_path / "new").exists()
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputNotWritableError, match=r"OUTPUT_DIR .*file/out: .*file is a file"):
        check_writable_folder(str(tmp_path / "file" / "out"), "OUTPUT_DIR")
    # Permission bits do not stop root, who runs these tests in containers: ask os.access as a user would see it.
    monkeypatch.setattr("os.access", lambda path, mode: False)
    with pytest.raises(OutputNotWritableError, match=r"--output .*/ro/out cannot be created: .*/ro is not writable"):
        (tmp_path / "ro").mkdir()
        check_writable_folder(str(tmp_path / "ro" / "out"), "--output")


def test_a_full_disk_is_found_behind_the_error_a_writer_raised_while_cleaning_up():
    """torch.save's zip writer, when its file's write fails, raises "RuntimeError: ... unexpected pos" during the
    handling of the OSError: the cause is still the full disk."""
    import errno

    from freemask.errors import file_system_refusal

    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc] . unexpected pos 64 vs 0")
    except RuntimeError as wrapped:
        assert file_system_refusal(wrapped).errno == errno.ENOSPC
    assert file_system_refusal(RuntimeError("a bug")) is None
    assert file_system_refusal(OSError(errno.EACCES, "denied")) is None
