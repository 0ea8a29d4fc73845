"""A CLIP tokenizer with the real CLIP BPE vocabulary, built offline from the file open_clip ships.

Stable Diffusion v1's tokenizer is CLIP's (49,408 tokens, 48,894 merges). open_clip (already a dependency) ships the
same merges as ``bpe_simple_vocab_16e6.txt.gz``; the vocabulary is derived from them in CLIP's order: the 256
byte-level characters, the same with ``</w>``, one entry per merge, then the start and end tokens. transformers'
``CLIPTokenizer`` reads ``vocab.json`` + ``merges.txt`` only through ``from_pretrained`` of a folder (given the two
files as arguments, transformers >= 5.6 silently builds a 3-token dummy vocabulary), so the two files are written
once into a cache folder, atomically, and the folder is loaded. The tiny test pipeline uses it so that captions
tokenise exactly as the released models' do.
"""

import gzip
import json
import os
import tempfile
from typing import Any, List

from ..utils.atomic import atomic_write_text

MAX_LENGTH = 77  # CLIP's context: start token, 75 usable tokens, end token
_NUM_MERGES = 49152 - 256 - 2  # CLIP keeps the first 48,894 merges of the file


def _cache_root() -> str:
    """``$XDG_CACHE_HOME/freemask`` (``~/.cache/freemask``), or the temp folder when that is not writable."""
    root = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "freemask")
    try:
        os.makedirs(root, exist_ok=True)
        if os.access(root, os.W_OK):
            return root
    except OSError:
        pass
    return os.path.join(tempfile.gettempdir(), f"freemask-{os.getuid() if hasattr(os, 'getuid') else 'user'}")


def _vocab_and_merges() -> tuple:
    from open_clip.tokenizer import bytes_to_unicode, default_bpe

    with gzip.open(default_bpe(), "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")
    merges: List[str] = lines[1 : 1 + _NUM_MERGES]
    tokens = list(bytes_to_unicode().values())
    tokens += [t + "</w>" for t in tokens]
    tokens += ["".join(m.split(" ")) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(tokens)}, merges


def clip_tokenizer_folder() -> str:
    """The cache folder holding ``vocab.json`` and ``merges.txt`` (written on first use, atomically)."""
    folder = os.path.join(_cache_root(), "clip_bpe_16e6")
    vocab_path, merges_path = os.path.join(folder, "vocab.json"), os.path.join(folder, "merges.txt")
    if not (os.path.isfile(vocab_path) and os.path.isfile(merges_path)):
        os.makedirs(folder, exist_ok=True)
        vocab, merges = _vocab_and_merges()
        atomic_write_text(merges_path, "#version: 0.2\n" + "\n".join(merges) + "\n")
        atomic_write_text(vocab_path, json.dumps(vocab, ensure_ascii=False))
    return folder


def load_clip_tokenizer() -> Any:
    """transformers' ``CLIPTokenizer`` over the real CLIP vocabulary, 77 tokens long, with no hub access."""
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(clip_tokenizer_folder(), model_max_length=MAX_LENGTH, local_files_only=True)
