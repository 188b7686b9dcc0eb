"""Caption metrics against pycocoevalcap's own scorers, hand computations and the evaluator.

METEOR starts a Java process that loads a paraphrase table (~10 s on a busy 2-core machine),
so it runs twice in this file: once through caption_metrics and once directly, in one
module-scoped fixture. Every other check uses java=False. BLEU, ROUGE-L and CIDEr-D are mmjax's
own Python (`caption_scores`), checked here against pycocoevalcap's scorers (a test extra), and
without pycocoevalcap importable at all.
"""

import json
import math
import shutil
import subprocess
import sys
import threading

import numpy as np
import pytest

from mmjax.data.tokenizer import EOS, WordTokenizer
from mmjax.evaluators import build_evaluator
from mmjax.evaluators import captioning as cap
from mmjax.evaluators.captioning import CaptionEvaluator, caption_metrics, simple_tokenize

needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="needs Java")

REFERENCES = {
    "img1": [
        "A red square is left of a blue circle.",
        "There is a red square and a blue circle.",
        "a red square next to a blue circle",
    ],
    "img2": [
        "A green circle on top of a gray square.",
        "The green circle is above the gray square.",
        "a gray square below a green circle",
        "Green circle, gray square.",
    ],
    "img3": [
        "Three yellow squares in a row.",
        "a row of three yellow squares",
    ],
    "img4": [
        "An orange circle in the bottom left corner.",
        "a small orange circle at the bottom left",
        "There is one orange circle, bottom left.",
    ],
}
# img1: exact match of a reference (up to case/punctuation); img3: a poor one.
CANDIDATES = {
    "img1": "A red square is left of a blue circle.",
    "img2": "a green circle above a gray square",
    "img3": "an orange triangle at the top",
    "img4": "an orange circle at the bottom left",
}
EXACT = {key: refs[0] for key, refs in REFERENCES.items()}
POOR = {
    "img1": "two purple triangles",
    "img2": "nothing to see here",
    "img3": "a dog on a sofa",
    "img4": "blue sky",
}


@pytest.fixture(autouse=True)
def _reset_warning_flag(monkeypatch):
    monkeypatch.setattr(cap, "_warned_no_java", False)


def _no_java(references, candidates):
    return caption_metrics(references, candidates, java=False)


@pytest.fixture(scope="module")
def coco_scores():
    """caption_metrics with Java, and pycocoevalcap's tokenizer + scorers called directly."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    meteor = Meteor()  # its Java process loads while caption_metrics runs its own
    ours = caption_metrics(REFERENCES, CANDIDATES, java=True)
    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({k: [{"caption": c} for c in v] for k, v in REFERENCES.items()})
    res = tokenizer.tokenize({k: [{"caption": c}] for k, c in CANDIDATES.items()})
    direct = {
        "bleu": Bleu(4).compute_score(gts, res, verbose=0),
        "meteor": meteor.compute_score(gts, res),
        "rouge_l": Rouge().compute_score(gts, res),
        "cider_d": Cider().compute_score(gts, res),
    }
    meteor.meteor_p.kill()
    return ours, gts, res, direct


@needs_java
def test_agrees_with_pycocoevalcap_scorers(coco_scores):
    ours, _, _, direct = coco_scores
    assert list(ours) == ["bleu_1", "bleu_2", "bleu_3", "bleu_4", "meteor", "rouge_l", "cider_d"]
    for n in range(4):
        assert ours[f"bleu_{n + 1}"] == pytest.approx(direct["bleu"][0][n], rel=1e-12)
    for name in ("meteor", "rouge_l", "cider_d"):
        assert ours[name] == pytest.approx(direct[name][0], rel=1e-12)
    assert all(0 < ours[name] < 1 for name in ours if name != "cider_d")
    assert 0 < ours["cider_d"] < 10


@needs_java
def test_exact_candidate_beats_poor_one_per_image(coco_scores):
    # Per-image scores of the direct run: img1 (exact) above img3 (poor) on every metric.
    _, _, _, direct = coco_scores
    keys = list(REFERENCES)
    exact, poor = keys.index("img1"), keys.index("img3")
    per_image = {"bleu_4": direct["bleu"][1][3]} | {k: direct[k][1] for k in direct if k != "bleu"}
    for name, scores in per_image.items():
        assert scores[exact] > scores[poor], name
    assert per_image["meteor"][exact] > 0.99 and per_image["rouge_l"][exact] == 1.0


@needs_java
def test_ptb_tokenization_matches_pycocoevalcap(coco_scores):
    _, gts, res, _ = coco_scores
    texts = [c for v in REFERENCES.values() for c in v] + list(CANDIDATES.values())
    texts += ["The dog's ball -- red-ish (big)!", "", "two\nlines", "Café “quoted”"]
    ours = cap.ptb_tokenize(texts)
    theirs = [c for v in gts.values() for c in v] + [c for v in res.values() for c in v]
    assert ours[: len(theirs)] == theirs
    # PTB quotes (`` '') and "--" are dropped; -lrb- / -rrb- are kept (lowercased, so they
    # miss pycocoevalcap's "-LRB-" / "-RRB-" punctuation entries).
    assert ours[len(theirs) :] == ["the dog 's ball red-ish -lrb- big -rrb-", "", "two lines",
                                   "café quoted"]  # fmt: skip
    # On these plain captions the Python fallback tokenizes as PTB does.
    assert [simple_tokenize(t) for t in texts[: len(theirs)]] == theirs


def test_corpus_exact_beats_poor_on_every_metric():
    exact = _no_java(REFERENCES, EXACT)
    cap._warned_no_java = False
    poor = _no_java(REFERENCES, POOR)
    for name in exact:
        assert exact[name] > poor[name], name
    for name in ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l"):
        assert exact[name] == pytest.approx(1.0, abs=1e-6), name
    assert poor["bleu_4"] < 1e-6


def test_bleu_1_and_rouge_l_by_hand():
    refs = {0: ["the cat sat on the mat", "a cat is on the mat"]}
    # BLEU-1: clipped unigram matches "the" x2 (of 3) + "cat" = 3 of 4 candidate words; brevity
    # penalty exp(1 - r/c) with the closest reference length r = 6 and c = 4.
    bleu = _no_java(refs, {0: "the the the cat"})
    assert bleu["bleu_1"] == pytest.approx(3 / 4 * math.exp(1 - 6 / 4), rel=1e-6)
    # ROUGE-L (pycocoevalcap: best precision and best recall over references, beta = 1.2):
    # LCS("a cat on the mat", ref1) = "cat on the mat" (4), with ref2 = the whole candidate (5).
    cap._warned_no_java = False
    rouge = _no_java(refs, {0: "a cat on the mat"})
    p, r, beta = max(4 / 5, 5 / 5), max(4 / 6, 5 / 6), 1.2
    assert rouge["rouge_l"] == pytest.approx((1 + beta**2) * p * r / (r + beta**2 * p))
    # Unigrams all match ("a" clipped at 1): BLEU-1 is the brevity penalty exp(1 - 6/5).
    assert rouge["bleu_1"] == pytest.approx(math.exp(1 - 6 / 5), rel=1e-6)


def _skip_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "METEOR and PTB" in r.getMessage()]


def test_no_java_detected_skips_meteor_and_warns_once(monkeypatch, caplog):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    first = caption_metrics(REFERENCES, CANDIDATES)
    assert list(first) == ["bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l", "cider_d"]
    assert all(np.isfinite(v) and v > 0 for v in first.values())
    again = caption_metrics(REFERENCES, CANDIDATES)
    assert again == first
    (line,) = _skip_lines(caplog)  # one warning, of one line, for both calls
    assert "\n" not in line and "no `java` on the PATH" in line


def test_without_pycocoevalcap_importable_the_metrics_still_run():
    # The plain install has no pycocoevalcap: hide it from a fresh interpreter.
    script = """
import importlib.machinery, json, sys
class Hide(importlib.machinery.PathFinder):
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.split(".")[0] != "pycocoevalcap":
            return super().find_spec(name, path, target)
finder = importlib.machinery.PathFinder
sys.meta_path = [Hide if f is finder else f for f in sys.meta_path]
from mmjax.evaluators.captioning import caption_metrics
refs = json.loads(sys.argv[1]); cands = json.loads(sys.argv[2])
print(json.dumps(caption_metrics(refs, cands)))
assert "pycocoevalcap" not in sys.modules
"""
    args = [json.dumps(REFERENCES), json.dumps(CANDIDATES)]
    done = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert got == pytest.approx(caption_metrics(REFERENCES, CANDIDATES, java=False), rel=1e-12)
    assert "meteor" not in got
    assert done.stderr.strip().splitlines() == [
        "caption metrics without Java: METEOR and PTB tokenization are skipped (pycocoevalcap "
        "is not installed (pip install -e '.[eval]')); a Python tokenizer stands in, so "
        "BLEU/ROUGE-L/CIDEr-D may differ slightly from the COCO evaluation"
    ]


def _random_corpus(rng, size: int, empty: bool):
    words = "a the red blue square circle left of is on top green big".split()

    def sentence():
        return " ".join(rng.choice(words, rng.integers(0 if empty else 1, 11)))

    gts = {i: [sentence() for _ in range(rng.integers(1, 6))] for i in range(size)}
    return gts, {i: [sentence()] for i in range(size)}


@pytest.mark.parametrize("seed", range(12))
def test_python_scores_equal_pycocoevalcaps_scorers(seed):
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    from mmjax.evaluators import caption_scores

    rng = np.random.default_rng(seed)
    gts, res = _random_corpus(rng, int(rng.integers(1, 9)), empty=seed % 3 == 0)
    theirs, theirs_each = Bleu(4).compute_score(gts, res, verbose=0)
    ours, ours_each = caption_scores.bleu(gts, res)
    assert ours == pytest.approx(theirs, rel=1e-12, abs=1e-300)
    for k in range(4):
        assert ours_each[k] == pytest.approx(theirs_each[k], rel=1e-12, abs=1e-300)
    for ours_fn, scorer in ((caption_scores.rouge_l, Rouge()), (caption_scores.cider_d, Cider())):
        theirs, theirs_each = scorer.compute_score(gts, res)
        ours, ours_each = ours_fn(gts, res)
        assert ours == pytest.approx(theirs, rel=1e-12, abs=1e-12)
        assert ours_each == pytest.approx(list(theirs_each), rel=1e-12, abs=1e-12)


def _fake_meteor(monkeypatch, script, started):
    """Replaces pycocoevalcap's Meteor by one whose process is a short Python `script`."""
    from pycocoevalcap.meteor import meteor as module

    class FakeMeteor(module.Meteor):
        def __init__(self):
            pipe = subprocess.PIPE
            command = [sys.executable, "-c", script]
            self.meteor_p = subprocess.Popen(command, stdin=pipe, stdout=pipe, stderr=pipe)
            self.lock = threading.Lock()
            started.append(self)

    monkeypatch.setattr(module, "Meteor", FakeMeteor)


def test_meteor_failure_and_timeout_close_the_process(monkeypatch):
    started = []
    script = "import sys; sys.stdin.readline(); print('oops', file=sys.stderr)"
    _fake_meteor(monkeypatch, script, started)
    with pytest.raises(RuntimeError, match="(?s)METEOR.*failed.*oops"):
        cap.meteor_score({0: ["a b"]}, {0: ["a"]})
    _fake_meteor(monkeypatch, "import time; time.sleep(60)", started)
    with pytest.raises(RuntimeError, match="took over 0.5 s"):
        cap.meteor_score({0: ["a b"]}, {0: ["a"]}, timeout_s=0.5)
    assert len(started) == 2
    for scorer in started:  # closed, and the lock Meteor.__del__ takes is free
        assert scorer.meteor_p.returncode is not None and not scorer.lock.locked()
        assert scorer.meteor_p.stdin.closed and scorer.meteor_p.stdout.closed


def test_input_errors_and_empty():
    with pytest.raises(ValueError, match="different keys"):
        caption_metrics({"a": ["x"]}, {"b": "x"}, java=False)
    with pytest.raises(ValueError, match="no reference"):
        caption_metrics({"a": []}, {"a": "x"}, java=False)
    empty = _no_java({}, {})
    assert set(empty) == {"bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l", "cider_d"}
    assert all(math.isnan(v) for v in empty.values())


# --- CaptionEvaluator -------------------------------------------------------------------------

TOKENIZER = WordTokenizer.build(
    [c for v in REFERENCES.values() for c in v] + list(CANDIDATES.values()) + [POOR["img3"]]
)
MAX_LEN, MAX_REFS = 14, 5


def _batch(keys, mask, candidates=CANDIDATES):
    """References int32 [B, R, L] (0-padded rows), predictions int32 [B, T] without bos."""
    refs = np.zeros((len(keys), MAX_REFS, MAX_LEN), np.int32)
    tokens = np.zeros((len(keys), MAX_LEN), np.int32)
    for i, key in enumerate(keys):
        refs[i, : len(REFERENCES[key])] = TOKENIZER.encode_batch(REFERENCES[key], MAX_LEN)
        tokens[i] = TOKENIZER.encode(candidates[key], MAX_LEN, add_bos=False)
    batch = {"captions": refs, "_mask": np.array(mask), "id": np.array([int(k[3:]) for k in keys])}
    return batch, {"tokens": tokens}


def _decoded(keys):
    references = {k: [TOKENIZER.decode(r) for r in TOKENIZER.encode_batch(REFERENCES[k], 20)]
                  for k in keys}  # fmt: skip
    candidates = {k: TOKENIZER.decode(TOKENIZER.encode(CANDIDATES[k], 20)) for k in keys}
    return references, candidates


def test_evaluator_masks_padding_and_matches_caption_metrics():
    # Two batches of 3; the padded rows repeat real examples with other predictions.
    batches = [
        _batch(["img1", "img2", "img3"], [True, True, True]),
        _batch(["img4", "img1", "img2"], [True, False, False], candidates=POOR),
    ]
    batches[1][1]["tokens"][0] = TOKENIZER.encode(CANDIDATES["img4"], MAX_LEN, add_bos=False)
    evaluator = CaptionEvaluator(tokenizer=TOKENIZER, java=False)
    references, candidates = evaluator.collect(batches)
    assert list(candidates) == [0, 1, 2, 3]
    assert [len(references[i]) for i in range(4)] == [3, 4, 2, 3]  # all-padding rows absent
    got = evaluator.evaluate(batches)
    assert got.pop("num_examples") == 4.0
    cap._warned_no_java = False
    want = _no_java(*_decoded(list(REFERENCES)))
    assert got == pytest.approx(want, rel=1e-12)
    # Decoding back through the word tokenizer does not change the fallback-tokenized text.
    assert want == pytest.approx(caption_metrics(REFERENCES, CANDIDATES, java=False), rel=1e-12)


def test_evaluator_example_key_counts_repeats_once_and_reads_text_bytes():
    evaluator = build_evaluator(
        "test", {"type": "captioning", "tokenizer": TOKENIZER, "example_key": "id", "java": False}
    )
    first = _batch(["img1", "img2"], [True, True])
    repeat = _batch(["img2", "img3"], [True, True], candidates=POOR)
    got = evaluator.evaluate([first, repeat])
    assert got["num_examples"] == 3.0
    references, candidates = evaluator.collect([first, repeat])
    assert candidates[2] == TOKENIZER.decode(first[1]["tokens"][1])  # first prediction kept
    assert len(references[2]) == 4  # not doubled

    # References as UTF-8 bytes uint8 [B, R, N], 0-padded, are used as the text itself.
    text = np.zeros((1, 2, 64), np.uint8)
    raw = REFERENCES["img3"][0].encode()
    text[0, 0, : len(raw)] = np.frombuffer(raw, np.uint8)
    batch = {"references": text, "_mask": np.array([True])}
    tokens = TOKENIZER.encode(CANDIDATES["img3"], MAX_LEN, add_bos=False)[None]
    bytes_eval = CaptionEvaluator(tokenizer=TOKENIZER, reference_key="references", java=False)
    references, candidates = bytes_eval.collect([(batch, {"tokens": tokens})])
    assert references == {0: [REFERENCES["img3"][0]]}
    assert candidates == {0: "an orange triangle at the top"}


def test_evaluator_errors():
    evaluator = CaptionEvaluator(tokenizer=TOKENIZER, java=False)
    batch, predicted = _batch(["img1"], [True])
    batch["captions"][:] = 0
    with pytest.raises(ValueError, match="no reference"):
        evaluator.evaluate([(batch, predicted)])
    with pytest.raises(ValueError, match=r"\[B, T\]"):
        evaluator.evaluate([(_batch(["img1"], [True])[0], {"tokens": np.array([EOS])})])
    with pytest.raises(ValueError, match="tokenizer"):
        build_evaluator("captions", {"type": "captioning"})
