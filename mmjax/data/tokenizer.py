"""Tokenizers: word-level (closed vocabularies) and SentencePiece (open text such as captions).

Both share ids 0..3 (pad, unk, bos, eos) and one interface: encode(text, max_len),
encode_batch, decode(ids), vocab_size, save(path) and load(path); `build_tokenizer` and
`load_tokenizer` pick the kind.

WordTokenizer, for small closed-vocabulary text such as Sort-of-CLEVR: text is lowercased and
split into words and single punctuation marks ("what's up?" becomes "what", "'", "s", "up",
"?"). The rest of the vocabulary is sorted by descending count, then alphabetically, so a build
is deterministic. Saved as JSON.

SentencePieceTokenizer: a SentencePiece model (unigram by default) trained locally from texts,
with NFKC normalisation and case folding ("nmt_nfkc_cf") by default. Saved as the model's own
.model bytes, so it can travel with a checkpoint.
"""

import collections
import io
import json
import os
import re
from collections.abc import Iterable, Iterator

import numpy as np
import sentencepiece as spm

PAD, UNK, BOS, EOS = 0, 1, 2, 3
SPECIAL_TOKENS = ("<pad>", "<unk>", "<bos>", "<eos>")
_TOKEN_RE = re.compile(r"\w+|[^\w\s]")


def split_words(text: str) -> list[str]:
    """Lowercases `text` and splits it into words and single punctuation marks."""
    return _TOKEN_RE.findall(text.lower())


class _Encoding:
    """encode / encode_batch for tokenizers that define tokens_to_ids(text) -> list[int]."""

    def encode(
        self, text: str, max_len: int, add_bos: bool = True, add_eos: bool = True
    ) -> np.ndarray:
        """Encodes `text` to int32[max_len]: [bos] tokens [eos] followed by pad (0).

        Raises ValueError when `text` has no tokens or does not fit in `max_len`.
        """
        return _pad_ids(self.tokens_to_ids(text), text, max_len, add_bos, add_eos)

    def encode_batch(
        self, texts: Iterable[str], max_len: int, add_bos: bool = True, add_eos: bool = True
    ) -> np.ndarray:
        """Encodes each text as `encode` does; returns int32[len(texts), max_len]."""
        rows = [self.encode(text, max_len, add_bos, add_eos) for text in texts]
        return np.stack(rows) if rows else np.zeros((0, max_len), np.int32)


class WordTokenizer(_Encoding):
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


def _pad_ids(ids: list[int], text: str, max_len: int, add_bos: bool, add_eos: bool) -> np.ndarray:
    """[bos] ids [eos] then pad (0) as int32[max_len]; ValueError when empty or too long."""
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


class SentencePieceTokenizer(_Encoding):
    """Maps text to int32 ids and back with a SentencePiece model.

    Same interface as WordTokenizer (encode / encode_batch / decode / vocab_size / save / load).

    Ids 0..3 are pad, unk, bos and eos (pieces "<pad>", "<unk>", "<bos>", "<eos>"). Characters
    never seen in training map to unk, which decodes as " ⁇ ".

    Attributes:
      model_proto: the serialized model (the bytes of a .model file).
    """

    def __init__(self, model_proto: bytes):
        self.model_proto = bytes(model_proto)
        self._sp = spm.SentencePieceProcessor(model_proto=self.model_proto)
        reserved = (self._sp.pad_id(), self._sp.unk_id(), self._sp.bos_id(), self._sp.eos_id())
        if reserved != (PAD, UNK, BOS, EOS):
            raise ValueError(f"model must have pad, unk, bos, eos = 0, 1, 2, 3, got {reserved}")

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        vocab_size: int = 1000,
        model_type: str = "unigram",
        character_coverage: float = 1.0,
        normalization_rule_name: str = "nmt_nfkc_cf",
        hard_vocab_limit: bool = False,
        num_threads: int = 1,
        **options,
    ) -> "SentencePieceTokenizer":
        """Trains a model on `texts` (in memory; nothing is downloaded or left on disk).

        Args:
          texts: training sentences, streamed once.
          vocab_size: wanted number of ids, specials included. With hard_vocab_limit=False
            (the default) it is an upper bound, so a small corpus still trains.
          model_type: "unigram", "bpe", "char" or "word". On a small repetitive corpus such as
            the Sort-of-CLEVR captions, unigram stops far below vocab_size (55 pieces, nearly
            characters, with sentencepiece 0.2.3) while "bpe" reaches it with whole words.
          character_coverage: fraction of characters the vocabulary covers (1.0 = all).
          normalization_rule_name: "nmt_nfkc_cf" (NFKC + lowercase), "nmt_nfkc", "identity".
          hard_vocab_limit: whether vocab_size must be reached exactly.
          num_threads: training threads. The model depends on it; with the same texts and
            settings (threads included) training gives the same bytes.
          **options: other SentencePieceTrainer flags (e.g. byte_fallback, split_digits).

        Raises ValueError when `texts` is empty or an option clashes with the reserved ids.
        """
        reserved = {"pad_id", "unk_id", "bos_id", "eos_id", "pad_piece", "unk_piece"}
        reserved |= {"bos_piece", "eos_piece", "model_writer", "sentence_iterator"}
        if reserved & set(options):
            raise ValueError(f"options {sorted(reserved & set(options))} are set by the tokenizer")
        count = 0

        def sentences() -> Iterator[str]:
            nonlocal count
            for text in texts:
                count += 1
                yield text

        writer = io.BytesIO()
        options = {"minloglevel": 2, **options}
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=sentences(),
                model_writer=writer,
                vocab_size=vocab_size,
                model_type=model_type,
                character_coverage=character_coverage,
                normalization_rule_name=normalization_rule_name,
                hard_vocab_limit=hard_vocab_limit,
                num_threads=num_threads,
                input_sentence_size=0,
                shuffle_input_sentence=False,
                pad_id=PAD,
                unk_id=UNK,
                bos_id=BOS,
                eos_id=EOS,
                pad_piece=SPECIAL_TOKENS[PAD],
                unk_piece=SPECIAL_TOKENS[UNK],
                bos_piece=SPECIAL_TOKENS[BOS],
                eos_piece=SPECIAL_TOKENS[EOS],
                **options,
            )
        except RuntimeError as error:
            if count == 0:
                raise ValueError("cannot train a SentencePiece model on no texts") from None
            raise ValueError(f"SentencePiece training failed: {error}") from None
        return cls(writer.getvalue())

    @property
    def vocab_size(self) -> int:
        """Number of ids, specials included."""
        return self._sp.get_piece_size()

    def tokens_to_ids(self, text: str) -> list[int]:
        """Returns the piece ids of `text` (unseen characters map to unk), without bos/eos."""
        return self._sp.encode(text, out_type=int)

    def decode(self, ids: Iterable[int]) -> str:
        """Detokenizes `ids`, skipping pad and bos and stopping at eos.

        Ids out of range decode as unk. Gives back the normalised text (lowercased by default).
        """
        kept = []
        for i in np.asarray(ids).reshape(-1).tolist():
            if i == EOS:
                break
            if i in (PAD, BOS):
                continue
            kept.append(i if 0 <= i < self.vocab_size else UNK)
        return self._sp.decode(kept)

    def save(self, path: str | os.PathLike) -> None:
        """Writes the model's .model bytes to `path`."""
        with open(path, "wb") as f:
            f.write(self.model_proto)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SentencePieceTokenizer":
        """Reads a model written by `save`; raises FileNotFoundError naming `path`.

        Any .model file whose ids 0..3 are pad, unk, bos, eos is accepted.
        """
        if not os.path.exists(path):
            raise FileNotFoundError(f"no tokenizer file at {os.fspath(path)}")
        with open(path, "rb") as f:
            return cls(f.read())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SentencePieceTokenizer) and self.model_proto == other.model_proto

    def __repr__(self) -> str:
        return f"SentencePieceTokenizer(vocab_size={self.vocab_size})"


TOKENIZERS = {"word": WordTokenizer, "sentencepiece": SentencePieceTokenizer}


def build_tokenizer(kind: str, texts: Iterable[str], **kwargs):
    """Builds a "word" or "sentencepiece" tokenizer from `texts`, or reads an "hf" one.

    `kwargs` go to WordTokenizer.build or SentencePieceTokenizer.train; kind "hf" (a trained
    Hugging Face tokenizer, `mmjax.data.hf_tokenizer`) reads kwargs["path"] and no text.
    """
    if kind == "hf":
        from mmjax.data.hf_tokenizer import HFTokenizer

        if "path" not in kwargs:
            raise ValueError('tokenizer kind "hf" needs tokenizer.path (its tokenizer.json)')
        return HFTokenizer.load(kwargs["path"])
    if kind == "word":
        return WordTokenizer.build(texts, **kwargs)
    if kind == "sentencepiece":
        return SentencePieceTokenizer.train(texts, **kwargs)
    raise ValueError(f"tokenizer kind {kind!r} is not one of {sorted(TOKENIZERS) + ['hf']}")


def load_tokenizer(path: str | os.PathLike):
    """Loads a tokenizer saved by any kind, telling them apart by content.

    JSON: a Hugging Face tokenizer.json ("hf") or a word vocabulary; else SentencePiece.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"no tokenizer file at {os.fspath(path)}")
    with open(path, "rb") as f:
        head = f.read(64).lstrip()
    if head.startswith(b"{"):
        from mmjax.data.hf_tokenizer import HFTokenizer, is_hf_tokenizer_json

        if is_hf_tokenizer_json(head):
            return HFTokenizer.load(path)
        return WordTokenizer.load(path)
    return SentencePieceTokenizer.load(path)
