from . import segformer_head, segmenter_head, semantic_fpn_head, semask_fpn_head  # noqa: F401  (registration)
