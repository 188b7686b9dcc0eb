"""Tokenizer kind "hf": a Hugging Face tokenizer.json behind mmjax's tokenizer interface."""

import json

import numpy as np
import pytest

from mmjax.data.tokenizer import WordTokenizer, build_tokenizer, load_tokenizer

tokenizers = pytest.importorskip(
    "tokenizers", reason='needs tokenizers: pip install -e ".[convert]"'
)


def _save_tokenizer(directory):
    """A word-level tokenizer that adds [BOS] ... [EOS], as CLIP's adds its own."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    vocab = {"!": 0, "[UNK]": 1, "[BOS]": 2, "[EOS]": 3, "a": 4, "red": 5, "square": 6, ".": 7}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.add_special_tokens(["[BOS]", "[EOS]"])
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[BOS] $A [EOS]", special_tokens=[("[BOS]", 2), ("[EOS]", 3)]
    )
    tokenizer.save(str(directory / "tokenizer.json"))


def test_encode_adds_the_tokenizers_own_specials_then_mmjax_padding(tmp_path):
    _save_tokenizer(tmp_path)
    tokenizer = build_tokenizer("hf", [], path=str(tmp_path))  # reads, trains nothing
    np.testing.assert_array_equal(tokenizer.encode("A red square.", 8), [2, 4, 5, 6, 7, 3, 0, 0])
    assert tokenizer.tokens_to_ids("a red !") == [4, 5, 0]  # id 0 is a word here
    assert tokenizer.unk_id == 1 and tokenizer.vocab_size == 8
    assert tokenizer.decode([2, 4, 5, 3]) == "a red"
    with pytest.raises(ValueError, match="more than 4"):
        tokenizer.encode("a red square .", 4)
    with pytest.raises(ValueError, match="needs tokenizer.path"):
        build_tokenizer("hf", [])


def test_a_saved_copy_loads_back_and_word_vocabularies_still_do(tmp_path):
    _save_tokenizer(tmp_path)
    tokenizer = build_tokenizer("hf", [], path=str(tmp_path / "tokenizer.json"))
    tokenizer.save(str(tmp_path / "hf_tokenizer.json"))
    again = load_tokenizer(tmp_path / "hf_tokenizer.json")
    np.testing.assert_array_equal(again.encode("a square", 5), tokenizer.encode("a square", 5))
    WordTokenizer.build(["a red square"]).save(tmp_path / "tokenizer_words.json")
    assert isinstance(load_tokenizer(tmp_path / "tokenizer_words.json"), WordTokenizer)
    with open(tmp_path / "hf_tokenizer.json") as f:
        assert "model" in json.load(f)
    with pytest.raises(FileNotFoundError, match="no tokenizer.json"):
        build_tokenizer("hf", [], path=str(tmp_path / "elsewhere"))
