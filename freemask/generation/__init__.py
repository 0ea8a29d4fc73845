"""Synthetic images from real masks (``tools/generate_syn.py``): backends, captions, rectified cross-attention.

Nothing here imports diffusers or transformers at ``import freemask``: the backends import them when built, with the
hub switched off (:mod:`.offline`). Start at :mod:`.backend` (the interface and :func:`.backend.build_backend`).
"""
