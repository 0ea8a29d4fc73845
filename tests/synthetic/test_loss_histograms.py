"""The loss histogram file: its bins, a round trip, and one-line errors for a file that cannot be used."""

import json

import numpy as np
import pytest

from freemask.errors import one_line
from freemask.synthetic.loss_histograms import (
    BINS,
    HIGH,
    LOW,
    LossHistogramError,
    LossHistograms,
    default_edges,
    histograms_path,
    read_loss_histograms,
    write_loss_histograms,
)

FIX = "re-run the filter"


def sample(num_classes=3, seed=0):
    edges = default_edges()
    counts = np.random.default_rng(seed).integers(0, 1000, (num_classes, 2, edges.size + 1))
    return LossHistograms("toy", 255, [f"c{i}" for i in range(num_classes)], edges, counts)


def test_edges_are_log_spaced_between_the_documented_limits():
    edges = default_edges()
    assert edges.size == BINS + 1 and edges[0] == pytest.approx(LOW) and edges[-1] == pytest.approx(HIGH)
    ratios = edges[1:] / edges[:-1]
    assert np.allclose(ratios, ratios[0]) and np.isinf(sample().upper_edges()[-1])


def test_round_trip_is_exact_and_the_file_sits_beside_its_class_loss_file(tmp_path):
    assert histograms_path("/x/class_loss.json") == "/x/class_loss_histograms.json"
    path = str(tmp_path / "h.json")
    written = sample()
    write_loss_histograms(path, written)
    read = read_loss_histograms(path, 3, FIX)
    assert np.array_equal(read.edges, written.edges) and np.array_equal(read.counts, written.counts)
    assert (read.dataset, read.ignore_label, read.boundary_radius) == ("toy", 255, 2)
    assert list(read.names) == ["c0", "c1", "c2"]
    assert np.array_equal(read.per_class(), written.counts.sum(axis=1))


@pytest.mark.parametrize(
    "content, expected",
    [
        ("{", "not a readable loss histogram JSON file"),
        ('{"format": "other"}', "not a loss histogram file"),
        (None, "malformed histograms"),
    ],
)
def test_a_corrupt_file_is_one_line_naming_it_and_the_fix(tmp_path, content, expected):
    path = tmp_path / "h.json"
    if content is None:
        write_loss_histograms(str(path), sample())
        data = json.loads(path.read_text())
        data["classes"][1]["boundary"] = data["classes"][1]["boundary"][:-1]  # one count short
        content = json.dumps(data)
    path.write_text(content)
    with pytest.raises(LossHistogramError) as error:
        read_loss_histograms(str(path), 3, FIX)
    message = one_line(error.value)
    assert expected in message and str(path) in message and message.endswith(FIX) and "\n" not in message


def test_missing_file_and_wrong_class_count_name_the_file(tmp_path):
    with pytest.raises(LossHistogramError, match="not found.*re-run the filter"):
        read_loss_histograms(str(tmp_path / "none.json"), 3, FIX)
    write_loss_histograms(str(tmp_path / "h.json"), sample())
    with pytest.raises(LossHistogramError, match="has 3 classes but the model has 4"):
        read_loss_histograms(str(tmp_path / "h.json"), 4, FIX)
