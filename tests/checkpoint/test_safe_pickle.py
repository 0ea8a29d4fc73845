"""The .pkl reader builds numpy weights and nothing else."""

import collections
import io
import os
import pickle

import numpy as np
import pytest

from freemask.checkpoint.convert.safe_pickle import RefusedGlobalError, load_weights_pickle


def _weights():
    model = collections.OrderedDict(
        w=np.arange(12, dtype=np.float32).reshape(3, 4), i=np.array([1, 2], dtype=np.int64), h=np.float16(0.5)
    )
    return {"model": model, "__author__": "someone", "matching_heuristics": True}


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_detectron2_style_pickles_load_under_every_protocol(protocol):
    loaded = load_weights_pickle(io.BytesIO(pickle.dumps(_weights(), protocol=protocol)))
    assert isinstance(loaded["model"], collections.OrderedDict)
    assert loaded["__author__"] == "someone" and loaded["matching_heuristics"] is True
    for key, value in _weights()["model"].items():
        assert np.array_equal(loaded["model"][key], value) and loaded["model"][key].dtype == value.dtype


def test_numpy_1_module_names_still_load():
    data = pickle.dumps(_weights(), protocol=2).replace(b"numpy._core.", b"numpy.core.")
    assert b"numpy.core.multiarray" in data
    assert np.array_equal(load_weights_pickle(io.BytesIO(data))["model"]["w"], _weights()["model"]["w"])


class _RunsCommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Evaluates:
    def __reduce__(self):
        return (eval, ("1 + 1",))


@pytest.mark.parametrize("payload", ["command", "eval", "codec"])
def test_anything_beyond_arrays_is_refused_before_it_runs(tmp_path, payload):
    marker = tmp_path / "ran"
    if payload == "command":
        data, refused = pickle.dumps({"model": {"w": _RunsCommand(marker)}}), "system"
    elif payload == "eval":
        data, refused = pickle.dumps([_Evaluates()]), "builtins.eval"
    else:  # protocol 2 spells bytes as _codecs.encode(text, "latin1"); another codec is not a weight file's
        data = pickle.dumps(b"ab", protocol=2).replace(b"latin1", b"rot13 ")
        refused = "rot13"
    with pytest.raises(pickle.UnpicklingError, match=refused):
        load_weights_pickle(io.BytesIO(data))
    assert not marker.exists()
    if payload != "codec":
        with pytest.raises(RefusedGlobalError):
            load_weights_pickle(io.BytesIO(data))
