"""Hard negative captions (mmjax.tasks.hard_negatives): one swapped word, and the two losses
against NumPy references written from their definitions."""

import jax
import numpy as np
import pytest

from mmjax.config_utils import ConfigError
from mmjax.models import contrastive
from mmjax.tasks import hard_negatives

VOCAB = [
    "<pad>",
    "<unk>",
    "<bos>",
    "<eos>",
    "a",
    "red",
    "square",
    "circle",
    "left",
    "right",
    "green",
]
WORD_ID = {w: i for i, w in enumerate(VOCAB)}


def _unit(seed, *shape):
    x = np.random.default_rng(seed).normal(size=shape)
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _log_sigmoid(x):
    return -np.logaddexp(0.0, -x)


def _softmax_reference(img, txt, hard, valid, scale):
    b = img.shape[0]
    total = 0.0
    for i in range(b):  # image i against the batch's captions and every valid hard negative
        cands = [scale * img[i] @ txt[j] for j in range(b)]
        cands += [
            scale * img[i] @ hard[g, j] for g in range(len(hard)) for j in range(b) if valid[g, j]
        ]
        total += (np.logaddexp.reduce(cands) - scale * img[i] @ txt[i]) / (2 * b)
    for j in range(b):  # caption j against the batch's images only
        cands = [scale * img[i] @ txt[j] for i in range(b)]
        total += (np.logaddexp.reduce(cands) - scale * img[j] @ txt[j]) / (2 * b)
    return total


def _sigmoid_reference(img, txt, hard, valid, scale, bias):
    b = img.shape[0]
    total = 0.0
    for i in range(b):
        for j in range(b):
            z = 1.0 if i == j else -1.0
            total += _log_sigmoid(z * (scale * img[i] @ txt[j] + bias))
        for g in range(len(hard)):
            for j in range(b):
                if valid[g, j]:
                    total += _log_sigmoid(-(scale * img[i] @ hard[g, j] + bias))
    return -total / b


def test_losses_match_numpy_and_reduce_to_clip_and_siglip_without_hard_negatives():
    img, txt, hard = _unit(0, 5, 4), _unit(1, 5, 4), _unit(2, 2, 5, 4)
    valid = np.array([[True, False, True, True, True], [False, True, True, False, True]])
    got = hard_negatives.softmax_loss(img, txt, hard, valid, 7.0)
    assert float(got) == pytest.approx(_softmax_reference(img, txt, hard, valid, 7.0), rel=1e-5)
    got = hard_negatives.sigmoid_loss(img, txt, hard, valid, 7.0, -3.0)
    want = _sigmoid_reference(img, txt, hard, valid, 7.0, -3.0)
    assert float(got) == pytest.approx(want, rel=1e-5)
    # All hard negatives masked: exactly CLIP's and SigLIP's losses.
    none = np.zeros_like(valid)
    assert float(hard_negatives.softmax_loss(img, txt, hard, none, 7.0)) == pytest.approx(
        float(contrastive.softmax_contrastive_loss(img, txt, 7.0)), rel=1e-6
    )
    assert float(hard_negatives.sigmoid_loss(img, txt, hard, none, 7.0, -3.0)) == pytest.approx(
        float(contrastive.sigmoid_contrastive_loss(img, txt, 7.0, -3.0)), rel=1e-6
    )
    # Hard negatives close to their images raise the loss above random ones.
    near = np.broadcast_to(img, hard.shape)
    assert float(hard_negatives.softmax_loss(img, txt, near, valid, 7.0)) > float(
        hard_negatives.softmax_loss(img, txt, hard, valid, 7.0)
    )


def test_swap_one_word_changes_exactly_one_swappable_word():
    tables = hard_negatives.partner_tables(["square:circle", "left:right"], WORD_ID.get, len(VOCAB))
    tokens = np.array(
        [
            [2, 4, 5, 6, 4, 5, 7, 8, 3],  # two shape words, one side word
            [2, 4, 5, 4, 5, 4, 5, 3, 0],  # no shape, no side word
        ]
    )
    seen = set()
    for seed in range(20):
        hard, valid = hard_negatives.swap_one_word(tokens, tables[0], jax.random.key(seed))
        hard = np.asarray(hard)
        assert valid.tolist() == [True, False]
        changed = np.flatnonzero(hard[0] != tokens[0])
        assert len(changed) == 1 and changed[0] in (3, 6)
        assert {tokens[0, changed[0]], hard[0, changed[0]]} == {6, 7}
        np.testing.assert_array_equal(hard[1], tokens[1])
        seen.add(int(changed[0]))
    assert seen == {3, 6}  # both occurrences get drawn
    hard, valid = hard_negatives.swap_one_word(tokens, tables[1], jax.random.key(0))
    assert np.asarray(hard)[0, 7] == WORD_ID["right"] and valid.tolist() == [True, False]


def test_a_word_set_exchanges_two_different_words_places():
    groups = ["red|green", "square:circle"]
    tables = hard_negatives.partner_tables(groups, WORD_ID.get, len(VOCAB))
    red, green = WORD_ID["red"], WORD_ID["green"]
    tokens = np.array(
        [
            [2, 4, 5, 6, 4, 10, 7, 4, 5, 3],  # red, green, red: the green one always moves
            [2, 4, 5, 6, 4, 5, 7, 3, 0, 0],  # red twice, no green: nothing to exchange
        ]
    )
    seen = set()
    for seed in range(20):
        hard, valid = hard_negatives.make_hard(tokens, tables[0], jax.random.key(seed))
        hard = np.asarray(hard)
        assert valid.tolist() == [True, False]
        changed = np.flatnonzero(hard[0] != tokens[0])
        assert len(changed) == 2 and 5 in changed, changed
        assert sorted(hard[0, changed]) == sorted(tokens[0, changed]) == [red, green]
        np.testing.assert_array_equal(hard[1], tokens[1])
        seen.add(tuple(changed))
    assert seen == {(2, 5), (5, 8)}
    # The pairs group through make_hard: one shape word swapped, as swap_one_word does.
    hard, valid = hard_negatives.make_hard(tokens, tables[1], jax.random.key(0))
    want = hard_negatives.swap_one_word(tokens, tables[1], jax.random.key(0))
    np.testing.assert_array_equal(np.asarray(hard), np.asarray(want[0]))


def test_bad_groups_and_unknown_words_are_config_errors():
    with pytest.raises(ConfigError, match="word pairs"):
        hard_negatives.parse_groups(["square-circle"])
    with pytest.raises(ConfigError, match="distinct words"):
        hard_negatives.parse_groups(["red|red"])
    with pytest.raises(ConfigError, match="'triangle' is not in the caption vocabulary"):
        hard_negatives.partner_tables(["square:triangle"], WORD_ID.get, len(VOCAB))
