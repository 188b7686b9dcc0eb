"""A word-level tokenizer for small, closed-vocabulary text such as Sort-of-CLEVR.

Text is lowercased and split into words and single punctuation marks ("what's up?" becomes
"what", "'", "s", "up", "?"). Ids 0..3 are reserved for pad, unk, bos and eos; the rest of the
vocabulary is sorted by descending count, then alphabetically, so a build is deterministic.
"""

import collections
import json
import os
import re
from collections.abc import Iterable

import numpy as np

from mmjax.data import sort_of_clevr

PAD, UNK, BOS, EOS = 0, 1, 2, 3
SPECIAL_TOKENS = ("<pad>", "<unk>", "<bos>", "<eos>")
_TOKEN_RE = re.compile(r"\w+|[^\w\s]")


def split_words(text: str) -> list[str]:
    """Lowercases `text` and splits it into words and single punctuation marks."""
    return _TOKEN_RE.findall(text.lower())


class WordTokenizer:
    """Maps text to int32 ids and back with a fixed word vocabulary.

    Attributes:
      vocab: list of tokens; a token's id is its position. The first four are the specials.
    """

    def __init__(self, vocab: list[str]):
        if tuple(vocab[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise ValueError(f"vocab must start with {SPECIAL_TOKENS}, got {vocab[:4]}")
        if len(set(vocab)) != len(vocab):
            raise ValueError("vocab has duplicate tokens")
        self.vocab = list(vocab)
        self._ids = {token: i for i, token in enumerate(self.vocab)}

    @classmethod
    def build(cls, texts: Iterable[str], min_count: int = 1) -> "WordTokenizer":
        """Builds the vocabulary of all tokens seen at least `min_count` times in `texts`."""
        counts = collections.Counter(token for text in texts for token in split_words(text))
        kept = [t for t, n in counts.items() if n >= min_count and t not in SPECIAL_TOKENS]
        kept.sort(key=lambda token: (-counts[token], token))
        return cls(list(SPECIAL_TOKENS) + kept)

    @property
    def vocab_size(self) -> int:
        """Number of ids, specials included."""
        return len(self.vocab)

    def tokens_to_ids(self, text: str) -> list[int]:
        """Returns the ids of `text`'s tokens (unknown words map to unk), without bos/eos."""
        return [self._ids.get(token, UNK) for token in split_words(text)]

    def encode(
        self, text: str, max_len: int, add_bos: bool = True, add_eos: bool = True
    ) -> np.ndarray:
        """Encodes `text` to int32[max_len]: [bos] tokens [eos] followed by pad (0).

        Raises ValueError when `text` has no tokens or does not fit in `max_len`.
        """
        ids = self.tokens_to_ids(text)
        if not ids:
            raise ValueError(f"cannot encode empty text {text!r}")
        ids = [BOS] * add_bos + ids + [EOS] * add_eos
        if len(ids) > max_len:
            raise ValueError(
                f"text {text!r} needs {len(ids)} tokens (bos/eos included) but max_len={max_len}"
            )
        out = np.zeros(max_len, np.int32)
        out[: len(ids)] = ids
        return out

    def encode_batch(
        self, texts: Iterable[str], max_len: int, add_bos: bool = True, add_eos: bool = True
    ) -> np.ndarray:
        """Encodes each text as `encode` does; returns int32[len(texts), max_len]."""
        rows = [self.encode(text, max_len, add_bos, add_eos) for text in texts]
        return np.stack(rows) if rows else np.zeros((0, max_len), np.int32)

    def decode(self, ids: Iterable[int]) -> str:
        """Joins the tokens of `ids` with spaces, skipping pad and bos and stopping at eos.

        Punctuation comes back space-separated ("what is it ?"): the split is not invertible.
        """
        tokens = []
        for i in np.asarray(ids).reshape(-1).tolist():
            if i == EOS:
                break
            if i in (PAD, BOS):
                continue
            tokens.append(self.vocab[i] if 0 <= i < len(self.vocab) else SPECIAL_TOKENS[UNK])
        return " ".join(tokens)

    def save(self, path: str | os.PathLike) -> None:
        """Writes the vocabulary to `path` as JSON."""
        with open(path, "w") as f:
            json.dump({"vocab": self.vocab}, f, indent=0)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "WordTokenizer":
        """Reads a tokenizer written by `save`; raises FileNotFoundError naming `path`."""
        if not os.path.exists(path):
            raise FileNotFoundError(f"no tokenizer file at {os.fspath(path)}")
        with open(path) as f:
            return cls(json.load(f)["vocab"])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WordTokenizer) and self.vocab == other.vocab

    def __repr__(self) -> str:
        return f"WordTokenizer(vocab_size={self.vocab_size})"


def sort_of_clevr_question_tokenizer() -> WordTokenizer:
    """Returns the tokenizer of every Sort-of-CLEVR question (all colors x all subtypes).

    Built from the templates rather than data, so its ids never depend on a dataset.
    """
    texts = [
        sort_of_clevr.question_text(color, subtype)
        for color in range(len(sort_of_clevr.COLORS))
        for subtype in range(len(sort_of_clevr.SUBTYPES))
    ]
    return WordTokenizer.build(texts)
