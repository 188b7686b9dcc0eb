import numpy as np
import pytest

from mmjax.data.tokenizer import (
    BOS,
    EOS,
    PAD,
    SPECIAL_TOKENS,
    UNK,
    SentencePieceTokenizer,
    WordTokenizer,
    build_tokenizer,
    load_tokenizer,
    split_words,
)
from mmjax.projects.sort_of_clevr import scenes as soc
from mmjax.projects.sort_of_clevr.dataset import question_tokenizer

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
    tok = question_tokenizer()
    assert tok == question_tokenizer()
    assert tok.vocab_size == 30
    for scene in soc.generate_split(0, 5):
        for text in scene["questions"]["text"]:
            ids = tok.encode(text, 16)
            assert UNK not in ids
            assert tok.decode(ids) == " ".join(split_words(text))


# --- SentencePiece -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def caption_corpus():
    return [caption for scene in soc.generate_split(0, 20) for caption in scene["captions"]]


@pytest.fixture(scope="module")
def sp_tok(caption_corpus):
    return SentencePieceTokenizer.train(caption_corpus, vocab_size=120)


def _normalized(text):
    return " ".join(text.lower().split())


def test_sentencepiece_specials_and_determinism(sp_tok, caption_corpus):
    assert 20 < sp_tok.vocab_size <= 120
    assert [sp_tok._sp.id_to_piece(i) for i in range(4)] == list(SPECIAL_TOKENS)
    # Same corpus, same settings: the same model bytes.
    assert SentencePieceTokenizer.train(iter(caption_corpus), vocab_size=120) == sp_tok


def test_sentencepiece_round_trip(sp_tok, caption_corpus):
    texts = caption_corpus[:10] + ["A  Red square,   left of the BLUE circle."]
    for text in texts:
        ids = sp_tok.encode(text, 160)
        assert ids.dtype == np.int32 and ids.shape == (160,) and ids[0] == BOS
        n = int((ids != PAD).sum())
        assert ids[n - 1] == EOS and (ids[n:] == PAD).all() and UNK not in ids
        assert sp_tok.decode(ids) == _normalized(text)
    bare = sp_tok.encode(texts[0], 160, add_bos=False, add_eos=False)
    assert sp_tok.decode(bare) == _normalized(texts[0])
    # Decoding skips bos/pad, stops at eos, maps out-of-range ids and unseen characters to unk.
    red = sp_tok.tokens_to_ids("red")
    assert sp_tok.decode([PAD, BOS, *red, EOS, *red]) == "red"
    assert sp_tok.decode([*red, sp_tok.vocab_size + 5]) == "red ⁇ "
    assert UNK in sp_tok.encode("red zebra", 16)
    batch = sp_tok.encode_batch(texts[:3], 160)
    assert batch.shape == (3, 160)
    np.testing.assert_array_equal(batch[2], sp_tok.encode(texts[2], 160))


def test_sentencepiece_errors(sp_tok):
    with pytest.raises(ValueError, match="empty"):
        sp_tok.encode("  ", 8)
    with pytest.raises(ValueError, match=r"max_len=4"):
        sp_tok.encode("a red square and a blue circle", 4)
    with pytest.raises(ValueError, match="no texts"):
        SentencePieceTokenizer.train([], vocab_size=50)
    with pytest.raises(ValueError, match="pad_id"):
        SentencePieceTokenizer.train(["a b"], pad_id=5)


def test_sentencepiece_save_load(sp_tok, caption_corpus, tmp_path):
    path = tmp_path / "tokenizer.model"
    sp_tok.save(path)
    loaded = SentencePieceTokenizer.load(path)
    assert loaded == sp_tok and loaded.vocab_size == sp_tok.vocab_size
    ids = sp_tok.encode_batch(caption_corpus[:20], 160)
    np.testing.assert_array_equal(loaded.encode_batch(caption_corpus[:20], 160), ids)
    assert load_tokenizer(path) == sp_tok
    with pytest.raises(FileNotFoundError, match="nope.model"):
        SentencePieceTokenizer.load(tmp_path / "nope.model")


def test_build_and_load_tokenizer_by_kind(tmp_path):
    word = build_tokenizer("word", TEXTS)
    assert word == WordTokenizer.build(TEXTS)
    word.save(tmp_path / "tokenizer.json")
    assert load_tokenizer(tmp_path / "tokenizer.json") == word
    sp = build_tokenizer("sentencepiece", TEXTS * 3, vocab_size=40, model_type="bpe")
    assert isinstance(sp, SentencePieceTokenizer)
    assert sp.decode(sp.encode(TEXTS[1], 32)) == TEXTS[1].lower()
    with pytest.raises(ValueError, match="'chars'"):
        build_tokenizer("chars", TEXTS)
    with pytest.raises(FileNotFoundError, match="missing"):
        load_tokenizer(tmp_path / "missing")
