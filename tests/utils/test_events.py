"""metrics.json stays readable across kills and resumes; its writers name their file when the disk refuses a write."""

import errno
import json
import logging

import pytest

from freemask.errors import OutputWriteError
from freemask.utils.events import JSONWriter, MetricStorage, drop_incomplete_last_line, last_written_iteration
from freemask.utils.logger import LogFileHandler


def test_a_line_cut_short_by_a_kill_is_dropped_before_a_resumed_run_appends(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text('{"iteration": 0, "total_loss": 1.0}\n{"iteration": 1, "total_lo')
    assert last_written_iteration(str(path)) == 0
    storage = MetricStorage()
    storage.iter = 1
    storage.put_scalars(total_loss=0.5)
    writer = JSONWriter(str(path))
    writer.write(storage)
    writer.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]  # every line parses
    assert lines == [{"iteration": 0, "total_loss": 1.0}, {"iteration": 1, "total_loss": 0.5}]


@pytest.mark.parametrize("content", ["", "no newline at all", '{"iteration": 3}\n'])
def test_drop_incomplete_last_line_keeps_complete_lines_only(tmp_path, content):
    path = tmp_path / "metrics.json"
    path.write_text(content)
    drop_incomplete_last_line(str(path))
    assert path.read_text() == ("" if not content.endswith("\n") else content)
    drop_incomplete_last_line(str(tmp_path / "missing.json"))  # nothing to do, no error


def test_a_full_disk_under_metrics_json_names_it(tmp_path):
    writer = JSONWriter(str(tmp_path / "metrics.json"))
    writer._file.close()
    writer._file = open("/dev/full", "w")  # every write answered with ENOSPC, as a full file system does
    storage = MetricStorage()
    storage.put_scalars(total_loss=1.0)
    with pytest.raises(OutputWriteError) as error:
        writer.write(storage)
    assert error.value.errno == errno.ENOSPC and str(error.value).startswith(
        f"cannot write {tmp_path / 'metrics.json'}: No space left on device (ENOSPC); what was written to it before "
        f"is intact; free space in {tmp_path}"
    )


def test_a_full_disk_under_the_log_file_stops_with_one_error_not_a_logging_traceback_per_line(tmp_path, capsys):
    logger = logging.getLogger("freemask.test_events")
    handler = LogFileHandler(str(tmp_path / "log.txt"))
    handler.stream.close()
    handler.stream = open("/dev/full", "w")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with pytest.raises(OutputWriteError, match=f"cannot write {tmp_path / 'log.txt'}: No space left on device"):
            logger.warning("a line")
    finally:
        logger.removeHandler(handler)
    assert "Logging error" not in capsys.readouterr().err
