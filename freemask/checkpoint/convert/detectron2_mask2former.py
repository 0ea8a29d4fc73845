"""Official Mask2Former (detectron2) checkpoints: ``{"model": {name: array}, ...}`` in ``.pkl`` or ``.pth``.

Our pixel decoder and transformer decoder were written with the official parameter names, so the head converts by
prefix alone (``sem_seg_head.pixel_decoder.`` -> ``pixel_decoder.``, ``sem_seg_head.predictor.`` ->
``transformer_decoder.``); only the backbones are renamed (``backbones.py``). The file is recognised by its linear
class head (``class_embed.weight``): FreeSeg's files share every other head name but end in an MLP.
"""

from .backbones import DETECTRON2_DEEPLAB_STEM, DETECTRON2_RESNET, DETECTRON2_SWIN
from .layout import Layout
from .rules import Drop, Rule

HEAD = (
    Drop("criterion.empty_weight", "class weights of the loss, rebuilt from MODEL.MASK_FORMER.NO_OBJECT_WEIGHT"),
    Rule("sem_seg_head.pixel_decoder.*", "pixel_decoder.*"),
    Rule("sem_seg_head.predictor.*", "transformer_decoder.*"),
)

LAYOUT = Layout(
    name="detectron2_mask2former",
    family="detectron2",
    description="official Mask2Former release (.pkl/.pth with 'model', sem_seg_head.* keys)",
    weights_key="model",
    marker="sem_seg_head.predictor.class_embed.weight",
    table=DETECTRON2_RESNET + DETECTRON2_SWIN + HEAD,
    variants=(DETECTRON2_DEEPLAB_STEM,),
)
