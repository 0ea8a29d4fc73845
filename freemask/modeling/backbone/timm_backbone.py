"""Any timm model with ``features_only`` support as a backbone (ResNets here; Swin and ViT variants later)."""

import logging
import math
import os
from typing import Dict, List, Sequence, Tuple

import timm
import torch
from timm.layers import freeze_batch_norm_2d

from ...config import CfgNode
from ..build import BACKBONE_REGISTRY
from .base import Backbone, ShapeSpec

logger = logging.getLogger(__name__)


def _feature_name(stride: int) -> str:
    """detectron2's naming: stride 4 -> res2, 8 -> res3, 16 -> res4, 32 -> res5."""
    return f"res{int(math.log2(stride))}"


@BACKBONE_REGISTRY.register()
class TimmBackbone(Backbone):
    """A timm feature extractor whose outputs are named by stride (``res2`` = stride 4 ... ``res5`` = stride 32).

    Pre-trained weights come only from a local file: this project never downloads at run time, so a hub name or
    URL is refused with a message saying to download the file and pass its path.
    """

    def __init__(
        self,
        model_name: str,
        out_features: Sequence[str] = ("res2", "res3", "res4", "res5"),
        pretrained: str = "",
        freeze_at: int = 0,
        norm: str = "BN",
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        kwargs = {"drop_path_rate": drop_path_rate} if drop_path_rate > 0 else {}
        if pretrained:
            if "://" in pretrained or not os.path.isfile(pretrained):
                raise FileNotFoundError(
                    f"MODEL.BACKBONE.PRETRAINED={pretrained!r} is not a local file; download the weights and pass "
                    "the file's path (nothing is downloaded at run time)"
                )
            kwargs["pretrained_cfg_overlay"] = {"file": pretrained}
        self.body = timm.create_model(model_name, pretrained=bool(pretrained), features_only=True, **kwargs)
        if pretrained:
            logger.info("Loaded backbone weights from %s", pretrained)
        strides = self.body.feature_info.reduction()
        names = [_feature_name(s) for s in strides]
        missing = [f for f in out_features if f not in names]
        if missing:
            raise ValueError(f"{model_name} has no feature {missing}; it offers {names}")
        self._outputs: List[Tuple[int, str]] = [(names.index(f), f) for f in out_features]
        channels = self.body.feature_info.channels()
        self._shapes = {name: ShapeSpec(channels[i], strides[i]) for i, name in self._outputs}
        self._channels_last_output = str(getattr(self.body, "output_fmt", "NCHW")).endswith("NHWC")
        if norm == "FrozenBN":
            self.body = freeze_batch_norm_2d(self.body)
        elif norm != "BN":
            raise ValueError(f"MODEL.BACKBONE.NORM must be BN or FrozenBN, got {norm!r}")
        self._freeze(freeze_at)

    @classmethod
    def from_config(cls, cfg: CfgNode) -> dict:
        b = cfg.MODEL.BACKBONE
        return {
            "model_name": b.TIMM_NAME,
            "out_features": b.OUT_FEATURES,
            "pretrained": b.PRETRAINED,
            "freeze_at": b.FREEZE_AT,
            "norm": b.NORM,
            "drop_path_rate": b.DROP_PATH_RATE,
        }

    def _freeze(self, freeze_at: int) -> None:
        """Freeze the first ``freeze_at`` feature stages and every module before them (1 = the stem)."""
        if freeze_at <= 0:
            return
        module_names = self.body.feature_info.module_name()
        last = module_names[min(freeze_at, len(module_names)) - 1].split(".")[0]
        for name, child in list(self.body.named_children()):
            child.requires_grad_(False)
            setattr(self.body, name, freeze_batch_norm_2d(child))
            if name == last:
                break

    def output_shape(self) -> Dict[str, ShapeSpec]:
        return dict(self._shapes)

    def forward(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        features = self.body(images)
        if self._channels_last_output:
            features = [f.permute(0, 3, 1, 2) for f in features]
        return {name: features[i] for i, name in self._outputs}
