"""A Hugging Face tokenizer (tokenizer.json) behind mmjax's tokenizer interface.

For text towers imported with `mmjax.weights` (CLIP): their token ids are those of the
tokenizer they were trained with. `config.tokenizer = dict(kind="hf", path=DIR)` reads DIR's
tokenizer.json (written by a fast tokenizer's or a processor's `save_pretrained`), or the file
itself; the run saves a copy in its workdir (hf_tokenizer.json) so a resumed or reloaded run
encodes text with the same ids. Reading needs the `tokenizers` package (the [convert] extra),
never the network.

`encode(text, max_len)` gives the tokenizer's own ids with its special tokens (CLIP: BOS ...
EOS) followed by mmjax's padding, 0. Id 0 may be a real token of the vocabulary (CLIP's "!"):
models that read such ids are set up not to treat 0 as padding (`DualEncoder.pad_id=-1`, a
causal text tower read at EOS), and tasks only test the first id (BOS) for an absent text.
It is meant for dual encoders' text towers: mmjax's caption decoders start and stop at mmjax's
own BOS and EOS ids, so captioning keeps the "word" and "sentencepiece" kinds.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np


def _tokenizer_file(path: str) -> str:
    path = os.path.abspath(os.path.expanduser(os.fspath(path)))
    file = os.path.join(path, "tokenizer.json") if os.path.isdir(path) else path
    if not os.path.isfile(file):
        raise FileNotFoundError(
            f"no tokenizer.json at {path}; save the model's tokenizer (or processor) there with "
            "save_pretrained"
        )
    return file


class HFTokenizer:
    """Encodes and decodes with a `tokenizers.Tokenizer` (see the module docstring).

    Attributes:
      tokenizer: the `tokenizers.Tokenizer`.
      unk_id: the id of its unknown token, or -1 when it has none (byte-level BPE).
    """

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        unk = None
        model = tokenizer.model
        if getattr(model, "unk_token", None):
            unk = tokenizer.token_to_id(model.unk_token)
        self.unk_id = -1 if unk is None else int(unk)

    @classmethod
    def load(cls, path: str | os.PathLike) -> HFTokenizer:
        """The tokenizer of a tokenizer.json file, or of a directory holding one."""
        try:
            from tokenizers import Tokenizer
        except ImportError:
            raise ImportError(
                'tokenizer kind "hf" needs the tokenizers package: pip install -e ".[convert]"'
            ) from None
        return cls(Tokenizer.from_file(_tokenizer_file(path)))

    @property
    def vocab_size(self) -> int:
        """The number of ids, added tokens included."""
        return int(self.tokenizer.get_vocab_size(with_added_tokens=True))

    def tokens_to_ids(self, text: str) -> list[int]:
        """The ids of `text` without special tokens."""
        return list(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def encode(self, text: str, max_len: int) -> np.ndarray:
        """int32 [max_len]: the ids with the tokenizer's special tokens, then 0s.

        Raises ValueError when `text` is empty or does not fit in `max_len`.
        """
        if not text.strip():
            raise ValueError(f"text {text!r} has no tokens")
        ids = self.tokenizer.encode(text).ids
        if len(ids) > max_len:
            raise ValueError(f"text {text[:60]!r} has {len(ids)} tokens, more than {max_len}")
        row = np.zeros(max_len, np.int32)
        row[: len(ids)] = ids
        return row

    def encode_batch(self, texts: Iterable[str], max_len: int) -> np.ndarray:
        """`encode` of each text: int32 [len(texts), max_len]."""
        rows = [self.encode(text, max_len) for text in texts]
        return np.stack(rows) if rows else np.zeros((0, max_len), np.int32)

    def decode(self, ids: Iterable[int]) -> str:
        """The text of `ids`, special tokens left out."""
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=True)

    def save(self, path: str | os.PathLike) -> None:
        """Writes the tokenizer as one tokenizer.json file at `path`."""
        self.tokenizer.save(os.fspath(path))

    def __repr__(self) -> str:
        return f"HFTokenizer(vocab_size={self.vocab_size})"


def is_hf_tokenizer_json(head: bytes) -> bool:
    """Whether a JSON file's first bytes are those of a Hugging Face tokenizer.json."""
    return b'"version"' in head or b'"truncation"' in head
