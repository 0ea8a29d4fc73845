import pytest
import torch
from torch import nn

from freemask.checkpoint import Checkpointer, CheckpointError


def classifier(num_classes):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, num_classes, 1))


def test_strict_refuses_weights_that_do_not_fit_and_lenient_loads_what_fits(tmp_path):
    Checkpointer(classifier(6), str(tmp_path)).save("six_classes")
    path = str(tmp_path / "six_classes.pth")

    with pytest.raises(CheckpointError, match=r"1\.weight: checkpoint \(6, 8, 1, 1\) vs model \(5, 8, 1, 1\)"):
        Checkpointer(classifier(5), strict=True).load(path)

    lenient = classifier(5)
    Checkpointer(lenient).load(path)  # the shared first layer loads, the classifier keeps its initialisation
    assert torch.equal(lenient[0].weight, classifier(6)[0].weight)

    exact = classifier(6)
    nn.init.zeros_(exact[1].weight)
    Checkpointer(exact, strict=True).load(path)
    assert torch.equal(exact[1].weight, classifier(6)[1].weight)


def test_strict_refuses_missing_parameters(tmp_path):
    torch.save({"model": {"0.weight": torch.zeros(8, 3, 3, 3)}}, tmp_path / "partial.pth")
    with pytest.raises(CheckpointError, match=r"3 model parameters missing \(0.bias, 1.weight, 1.bias\)"):
        Checkpointer(classifier(6), strict=True).load(str(tmp_path / "partial.pth"))
