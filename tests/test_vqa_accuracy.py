"""VQAv2 accuracy: the official normalisation rule by rule, hand-computed soft scores, and
agreement with an independent implementation of the official leave-one-out loop; the answer
vocabulary's "vqa" normalisation and the soft training targets."""

import jax.numpy as jnp
import numpy as np
import pytest

from mmjax.data.answers import AnswerVocabulary
from mmjax.data.vqa_normalize import normalize_vqa_answer
from mmjax.evaluators.vqa_accuracy import VQAAccuracyEvaluator, soft_scores, vqa_accuracy
from mmjax.tasks.vqa import soft_target_loss

# (prediction, ten human answers, hand-computed accuracy, the rule exercised)
CASES = [
    ("yes", ["yes"] * 10, 1.0, "exact, all agree"),
    ("Yes.", ["yes"] * 10, 1.0, "case and a final period"),
    ("two", ["2"] * 3 + ["3"] * 7, 0.9, "number word -> digit; 3 matches: 0.9"),
    ("the dog", ["dog"] * 2 + ["cat"] * 8, 0.6, "article dropped; 2 matches: 0.6"),
    ("an apple", ["apple"] + ["pear"] * 9, 0.3, "article 'an'; 1 match: 0.3"),
    ("dont know", ["don't know"] * 4 + ["no"] * 6, 1.0, "contraction restored; 4 matches"),
    ("1,000", ["1000"] * 10, 1.0, "digit-comma-digit: punctuation deleted"),
    ("red,white", ["red white"] * 10, 1.0, "comma not touching a space: becomes a space"),
    ("red, white", ["red white"] * 10, 1.0, "comma touching a space: deleted"),
    ("3.5", ["3.5"] * 5 + ["35"] * 5, 1.0, "a period before a digit stays"),
    ("x-ray", ["x ray"] * 2 + ["xray"] * 8, 0.6, "hyphen becomes a space"),
    ("none", ["0"] * 10, 1.0, "'none' -> 0"),
    ("  blue\n", ["blue"] * 9 + ["navy"], 1.0, "newline and surrounding spaces"),
    ("what?!", ["what"] * 10, 1.0, "? and ! deleted"),
    ("cat", ["dog"] * 10, 0.0, "no match"),
]


def official_accuracy(prediction: str, humans: list[str]) -> float:
    """The official script's loop, written independently: leave one human answer out at a
    time, min(1, matches among the other nine / 3), averaged over the ten."""
    predicted = normalize_vqa_answer(prediction)
    answers = [{"answer_id": i, "answer": normalize_vqa_answer(a)} for i, a in enumerate(humans)]
    accuracies = []
    for left_out in answers:
        others = [a for a in answers if a != left_out]
        matching = [a for a in others if a["answer"] == predicted]
        accuracies.append(min(1.0, len(matching) / 3))
    return sum(accuracies) / len(accuracies)


@pytest.mark.parametrize("prediction,humans,expected,rule", CASES, ids=[c[3] for c in CASES])
def test_crafted_cases_match_hand_computed_values(prediction, humans, expected, rule):
    assert vqa_accuracy(prediction, humans) == pytest.approx(expected, abs=1e-9), rule
    assert official_accuracy(prediction, humans) == pytest.approx(expected, abs=1e-9), rule


def test_agrees_with_the_official_loop_on_random_answer_sets():
    rng = np.random.default_rng(0)
    words = ["yes", "no", "2", "two", "the dog", "dog", "red", "Red."]
    for _ in range(300):
        humans = list(rng.choice(words, size=10))
        prediction = str(rng.choice(words))
        assert vqa_accuracy(prediction, humans) == pytest.approx(
            official_accuracy(prediction, humans), abs=1e-12
        )


def test_closed_form_for_every_match_count_and_fewer_answers():
    # Ten answers: the official loop for m = 0..10 matches.
    for m in range(11):
        humans = ["a1"] * m + [f"other{i}" for i in range(10 - m)]
        expected = official_accuracy("a1", humans)
        assert soft_scores(np.asarray(m), np.asarray(10)) == pytest.approx(expected)
    # Fewer answers: agreeing with every human scores 1; a single answer is exact match.
    for n in range(1, 10):
        assert soft_scores(np.asarray(n), np.asarray(n)) == pytest.approx(1.0)
        assert soft_scores(np.asarray(0), np.asarray(n)) == 0.0
    assert soft_scores(np.asarray(1), np.asarray(1)) == 1.0


def test_normalisation_rules_one_by_one():
    assert normalize_vqa_answer("Two Dogs") == "2 dogs"
    assert normalize_vqa_answer("a b c") == "b c"  # "a" is an article
    assert normalize_vqa_answer("isnt it") == "isn't it"
    assert normalize_vqa_answer("ten") == "10"
    assert normalize_vqa_answer("(left)") == "left"
    assert normalize_vqa_answer("left/right") == "left right"
    assert normalize_vqa_answer("end.") == "end"


def test_evaluator_scores_ids_per_answer_type_and_adds_up():
    # Two images, two questions each; 10 human answers as ids (-1 pads the last question).
    answers = np.full((2, 2, 10), -1, np.int32)
    answers[0, 0] = [0] * 3 + [1] * 7  # predict 0: 0.9
    answers[0, 1] = [2] * 10  # predict 2: 1.0
    answers[1, 0] = [1] * 10  # predict 0: 0.0
    types = np.zeros((2, 2, 48), np.uint8)
    for (i, j), name in {(0, 0): b"other", (0, 1): b"yes/no", (1, 0): b"other"}.items():
        types[i, j, : len(name)] = np.frombuffer(name, np.uint8)
    batch = {"_mask": np.ones(2, bool), "answers": answers, "group/answer_type": types}
    predicted = {"answer": np.asarray([[0, 2], [0, 0]], np.int32)}
    metrics = VQAAccuracyEvaluator().evaluate([(batch, predicted)])
    assert metrics["count"] == 3
    assert metrics["vqa_accuracy"] == pytest.approx((0.9 + 1.0 + 0.0) / 3)
    assert metrics["vqa_accuracy/other"] == pytest.approx(0.45)
    assert metrics["vqa_accuracy/yes_no"] == pytest.approx(1.0)


def test_vocabulary_with_vqa_normalisation_merges_spellings(tmp_path):
    vocabulary = AnswerVocabulary.build(["Two", "2", "two.", "the dog", "dog"], normalization="vqa")
    assert vocabulary.answers == ["2", "dog"]
    assert vocabulary.id("TWO") == vocabulary.id("2") == 0
    vocabulary.save(tmp_path / "answers.json")
    assert AnswerVocabulary.load(tmp_path / "answers.json") == vocabulary
    basic = AnswerVocabulary.build(["Two", "2"])
    assert basic.answers == ["2", "two"]  # the default keeps them apart, as before


def test_soft_targets_are_the_vqa_scores_of_each_answer():
    num = 4
    answers = np.asarray([[[0, 0, 0, 1, 1, 1, 1, 2, 2, 4], [-1] * 10]], np.int32)  # [1, 2, 10]
    logits = jnp.zeros((1, 2, num))
    loss, metrics = soft_target_loss(logits, jnp.asarray(answers))
    # Targets of answer 0..3 for the first question: 3, 4, 2, 0 matches of 10 humans.
    expected = [float(soft_scores(np.asarray(m), np.asarray(10))) for m in (3, 4, 2, 0)]
    bce = sum(np.log(2.0) for _ in range(num))  # sigmoid(0) = 0.5: each term log 2
    assert float(loss) == pytest.approx(bce, rel=1e-5)  # padding question left out
    assert float(metrics["accuracy"]) == pytest.approx(expected[0])  # argmax of zeros: 0
    jnp_targets = soft_scores(jnp.asarray([3, 4, 2, 0]), jnp.asarray(10), xp=jnp)
    np.testing.assert_allclose(np.asarray(jnp_targets), expected, rtol=1e-6)
