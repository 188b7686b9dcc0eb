import numpy as np
import pytest

from mmjax.data import sort_of_clevr as soc
from mmjax.data.tokenizer import (
    BOS,
    EOS,
    PAD,
    UNK,
    WordTokenizer,
    sort_of_clevr_question_tokenizer,
    split_words,
)

TEXTS = ["What is the shape of the red object?", "a red square, a blue circle."]


def test_split_words_lowercases_and_splits_punctuation():
    assert split_words("Is the Red object, on top?") == [
        "is",
        "the",
        "red",
        "object",
        ",",
        "on",
        "top",
        "?",
    ]
    assert split_words("end.") == ["end", "."]


def test_build_specials_and_order():
    tok = WordTokenizer.build(TEXTS)
    assert tok.vocab[:4] == ["<pad>", "<unk>", "<bos>", "<eos>"]
    assert (PAD, UNK, BOS, EOS) == (0, 1, 2, 3)
    # Most frequent first, then alphabetical.
    assert tok.vocab[4:8] == ["a", "red", "the", ","]
    assert tok.vocab_size == len(set(split_words(" ".join(TEXTS)))) + 4
    assert WordTokenizer.build(reversed(TEXTS)) == tok
    rare = WordTokenizer.build(TEXTS, min_count=2)
    assert set(rare.vocab[4:]) == {"a", "red", "the"}


def test_encode_decode_round_trip():
    tok = WordTokenizer.build(TEXTS)
    ids = tok.encode(TEXTS[0], max_len=16)
    assert ids.dtype == np.int32 and ids.shape == (16,)
    n = len(split_words(TEXTS[0]))
    assert ids[0] == BOS and ids[n + 1] == EOS and (ids[n + 2 :] == PAD).all()
    assert tok.decode(ids) == " ".join(split_words(TEXTS[0]))
    bare = tok.encode(TEXTS[0], max_len=n, add_bos=False, add_eos=False)
    assert tok.decode(bare) == "what is the shape of the red object ?"
    # Decoding stops at eos even if ids follow.
    assert tok.decode([BOS, tok.vocab.index("red"), EOS, tok.vocab.index("a")]) == "red"


def test_unknown_words_map_to_unk():
    tok = WordTokenizer.build(TEXTS)
    ids = tok.encode("a purple square", 8)
    assert ids[2] == UNK
    assert tok.decode(ids) == "a <unk> square"


def test_encode_errors():
    tok = WordTokenizer.build(TEXTS)
    with pytest.raises(ValueError, match=r"needs 11 tokens.*max_len=10"):
        tok.encode(TEXTS[0], max_len=10)
    with pytest.raises(ValueError, match="shape of the red"):
        tok.encode(TEXTS[0], max_len=3)
    with pytest.raises(ValueError, match="empty"):
        tok.encode("", max_len=10)
    with pytest.raises(ValueError, match="empty"):
        tok.encode("   ", max_len=10)


def test_encode_batch():
    tok = WordTokenizer.build(TEXTS)
    batch = tok.encode_batch(TEXTS, 16)
    assert batch.shape == (2, 16) and batch.dtype == np.int32
    np.testing.assert_array_equal(batch[1], tok.encode(TEXTS[1], 16))
    assert tok.encode_batch([], 16).shape == (0, 16)


def test_save_load(tmp_path):
    tok = WordTokenizer.build(TEXTS)
    path = tmp_path / "vocab.json"
    tok.save(path)
    loaded = WordTokenizer.load(path)
    assert loaded == tok and loaded.vocab_size == tok.vocab_size
    np.testing.assert_array_equal(loaded.encode(TEXTS[1], 12), tok.encode(TEXTS[1], 12))
    missing = tmp_path / "nope.json"
    with pytest.raises(FileNotFoundError, match="nope.json"):
        WordTokenizer.load(missing)


def test_bad_vocab_rejected():
    with pytest.raises(ValueError):
        WordTokenizer(["a", "b"])
    with pytest.raises(ValueError):
        WordTokenizer(["<pad>", "<unk>", "<bos>", "<eos>", "a", "a"])


def test_question_tokenizer_is_fixed_and_covers_questions():
    tok = sort_of_clevr_question_tokenizer()
    assert tok == sort_of_clevr_question_tokenizer()
    assert tok.vocab_size == 30
    for scene in soc.generate_split(0, 5):
        for text in scene["questions"]["text"]:
            ids = tok.encode(text, 16)
            assert UNK not in ids
            assert tok.decode(ids) == " ".join(split_words(text))
