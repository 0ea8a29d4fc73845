from . import segformer_head  # noqa: F401  (registration)
from . import semantic_fpn_head  # noqa: F401  (registration)
from . import segmenter_head  # noqa: F401  (registration)
