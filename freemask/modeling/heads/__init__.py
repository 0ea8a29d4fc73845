from . import semantic_fpn_head  # noqa: F401  (registration)
