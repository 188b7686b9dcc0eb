"""Caption metrics: BLEU-1..4, METEOR, ROUGE-L and CIDEr-D, as the COCO caption evaluation.

BLEU (corpus-level, "closest" reference length), ROUGE-L (beta 1.2) and CIDEr-D are computed in
pure Python by `mmjax.evaluators.caption_scores`, tested equal to pycocoevalcap's scorers, so
they need nothing beyond the plain install. CIDEr-D is what pycocoevalcap calls `Cider` and
every captioning paper reports as "CIDEr": n-grams 1..4, clipped counts, a Gaussian length
penalty (sigma 6) and a factor of 10. Its document frequencies come from the references being
scored, so a score depends on the whole evaluated set (and a set of one image scores 0: every
n-gram then has idf log(1/1) = 0).

METEOR (1.5) and the COCO evaluation's tokenization, Stanford PTBTokenizer (lowercased;
punctuation tokens dropped), are Java programs whose jars ship in pycocoevalcap: they need the
`eval` extra (`pip install -e '.[eval]'`) and a `java` on the PATH. PTB tokenization runs once
over all references and candidates through stdin rather than through pycocoevalcap's wrapper,
which writes a temporary file into its installed package directory. Without Java or
pycocoevalcap one warning line says so (`java=False` leaves them out silently), a Python
tokenizer stands in (`simple_tokenize`: close to PTB on plain captions, not identical on
clitics such as "don't") and METEOR is left out.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Hashable, Iterable, Mapping, Sequence

import numpy as np

from mmjax.evaluators import caption_scores
from mmjax.evaluators.caption_intervals import scored_captions
from mmjax.evaluators.examples import ExampleEvaluator, ExampleTable, Scored
from mmjax.evaluators.groups import GROUP_PREFIX, decode_values

BLEU_KEYS = ("bleu_1", "bleu_2", "bleu_3", "bleu_4")
METRIC_KEYS = BLEU_KEYS + ("meteor", "rouge_l", "cider_d")

_WORD_RE = re.compile(r"\w+(?:-\w+)*|'\w+")
_warned_no_java = False


def simple_tokenize(text: str) -> str:
    """Lowercases `text` and keeps its words, dropping punctuation; joined by single spaces.

    Hyphenated words stay whole ("red-ish") and clitics split off ("dog's" -> "dog 's"), as in
    PTB tokenization.
    """
    return " ".join(_WORD_RE.findall(text.lower()))


def java_available() -> bool:
    """Whether a `java` executable is on the PATH."""
    return shutil.which("java") is not None


def pycocoevalcap_available() -> bool:
    """Whether pycocoevalcap (the METEOR and PTB tokenizer jars; the `eval` extra) is installed."""
    return importlib.util.find_spec("pycocoevalcap") is not None


def java_metrics_unavailable() -> str | None:
    """Why METEOR and PTB tokenization cannot run here, or None when they can."""
    if not pycocoevalcap_available():
        return "pycocoevalcap is not installed (pip install -e '.[eval]')"
    if not java_available():
        return "no `java` on the PATH (install a Java runtime, e.g. OpenJDK 17)"
    return None


def java_requirements(java: bool | None) -> list:
    """What METEOR and PTB tokenization need when asked for (`java=True`), as Requirements.

    With java None or False they are optional (skipped with a warning), so nothing is required.
    """
    if java is not True:
        return []
    from mmjax.setup_check import executable, package

    return [
        package("pycocoevalcap", "pip install -e '.[eval]' (the METEOR and PTB tokenizer jars)"),
        executable("java", "install a Java runtime, e.g. apt-get install openjdk-17-jre-headless"),
    ]


def _require_pycocoevalcap() -> None:
    try:
        import pycocoevalcap  # noqa: F401
    except ImportError:
        raise ImportError(
            "METEOR and PTB tokenization need pycocoevalcap: pip install -e '.[eval]' (or "
            "pycocoevalcap)"
        ) from None


def _ptb_jar_and_punctuation() -> tuple[str, frozenset[str]]:
    _require_pycocoevalcap()
    from pycocoevalcap.tokenizer import ptbtokenizer

    directory = os.path.dirname(os.path.abspath(ptbtokenizer.__file__))
    jar = os.path.join(directory, ptbtokenizer.STANFORD_CORENLP_3_4_1_JAR)
    return jar, frozenset(ptbtokenizer.PUNCTUATIONS)


def ptb_tokenize(texts: Sequence[str], timeout_s: float = 600.0) -> list[str]:
    """PTB-tokenizes each text as pycocoevalcap's PTBTokenizer does, in one Java run.

    Lowercased, tokens joined by single spaces, the PTBTokenizer's punctuation tokens removed.
    Raises RuntimeError when Java fails or does not answer within `timeout_s` seconds.
    """
    if not texts:
        return []
    jar, punctuation = _ptb_jar_and_punctuation()
    # One line per text: collapse every kind of whitespace (newlines included) to a space.
    lines = "".join(" ".join(text.split()) + "\n" for text in texts)
    command = ["java", "-cp", jar, "edu.stanford.nlp.process.PTBTokenizer"]
    command += ["-preserveLines", "-lowerCase", "-encoding", "utf-8"]
    try:
        done = subprocess.run(
            command, input=lines.encode(), capture_output=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"PTB tokenization (Java) took over {timeout_s} s") from None
    out = done.stdout.decode().split("\n")
    if done.returncode != 0 or len(out) < len(texts):
        raise RuntimeError(
            f"PTB tokenization (Java) failed (exit {done.returncode}, {len(out)} lines for "
            f"{len(texts)} texts): {done.stderr.decode(errors='replace')[-2000:]}"
        )
    return [" ".join(w for w in line.split() if w not in punctuation) for line in out[: len(texts)]]


def _close_process(process: subprocess.Popen) -> None:
    for stream in (process.stdin, process.stdout, process.stderr):
        try:
            if stream is not None:
                stream.close()
        except OSError:  # a broken pipe when flushing stdin
            pass
    process.kill()
    process.wait()


def meteor_score(
    references: Mapping[Hashable, list[str]],
    candidates: Mapping[Hashable, list[str]],
    timeout_s: float = 600.0,
) -> float:
    """Corpus METEOR through pycocoevalcap's Meteor on tokenized text (one Java process).

    The process is always closed afterwards, and killed when it does not answer within
    `timeout_s` seconds (RuntimeError then, as when Java fails).
    """
    _require_pycocoevalcap()
    from pycocoevalcap.meteor.meteor import Meteor

    scorer = Meteor()
    process = scorer.meteor_p
    timed_out = threading.Event()

    def stop():
        timed_out.set()
        process.kill()

    watchdog = threading.Timer(timeout_s, stop)
    watchdog.daemon = True
    watchdog.start()
    try:
        score, _ = scorer.compute_score(dict(references), dict(candidates))
        return float(score)
    except (ValueError, OSError) as error:  # no answer (killed / crashed) or a broken pipe
        process.kill()
        if timed_out.is_set():
            raise RuntimeError(f"METEOR (Java) took over {timeout_s} s") from None
        stderr = process.stderr.read().decode(errors="replace")[-2000:]
        raise RuntimeError(f"METEOR (Java) failed: {error!r}; {stderr}") from None
    finally:
        watchdog.cancel()
        # Meteor.compute_score leaves its lock held when it raises, and Meteor.__del__ takes
        # that lock: release it so garbage collection cannot hang.
        if scorer.lock.locked():
            scorer.lock.release()
        _close_process(process)


def _warn_no_java(reason: str) -> None:
    """Logs, once per process, one line saying METEOR and PTB tokenization are skipped."""
    global _warned_no_java
    if not _warned_no_java:
        _warned_no_java = True
        logging.getLogger(__name__).warning(
            "caption metrics without Java: METEOR and PTB tokenization are skipped (%s); a "
            "Python tokenizer stands in, so BLEU/ROUGE-L/CIDEr-D may differ slightly from the "
            "COCO evaluation",
            reason,
        )


def caption_metrics(
    references: Mapping[Hashable, Sequence[str]],
    candidates: Mapping[Hashable, str],
    java: bool | None = None,
) -> dict[str, float]:
    """Corpus-level caption metrics of one candidate per example against its references.

    Args:
      references: example key -> its reference captions (at least one each), raw text.
      candidates: example key -> the generated caption, raw text; the same keys.
      java: use Java for PTB tokenization and METEOR (needs pycocoevalcap and `java` on the
        PATH); None uses it when both are there, and else logs one warning line (once per
        process). Without it `simple_tokenize` is used and "meteor" is absent.

    Returns:
      bleu_1..bleu_4, meteor (with Java), rouge_l, cider_d as floats (BLEU, METEOR and ROUGE-L
      in [0, 1], CIDEr-D in [0, 10]); NaN each when there are no examples.

    Raises:
      ValueError: the keys differ, or an example has no reference.
    """
    if set(references) != set(candidates):
        missing = sorted(map(repr, set(references) ^ set(candidates)))[:5]
        raise ValueError(f"references and candidates have different keys, e.g. {missing}")
    keys = list(references)
    for key in keys:
        if isinstance(references[key], str) or not isinstance(candidates[key], str):
            raise ValueError(f"example {key!r}: references must be a list of str, candidate a str")
        if len(references[key]) == 0:
            raise ValueError(f"example {key!r} has no reference caption")
    gts, res, java = tokenized_corpus(references, candidates, java)
    names = METRIC_KEYS if java else tuple(k for k in METRIC_KEYS if k != "meteor")
    if not gts:
        return {name: float("nan") for name in names}
    return scores_of_tokenized(gts, res, meteor=java)


def tokenized_corpus(references, candidates, java: bool | None) -> tuple[dict, dict, bool]:
    """(gts, res, whether Java was used): the texts of `caption_metrics`, tokenized, keyed alike.

    gts: key -> tokenized references; res: key -> [tokenized candidate] (the inputs' order).
    """
    keys = list(references)
    if java is None:
        reason = java_metrics_unavailable()
        java = reason is None
        if not java:
            _warn_no_java(reason)
    texts = [text for key in keys for text in references[key]] + [candidates[k] for k in keys]
    tokenized = ptb_tokenize(texts) if java else [simple_tokenize(text) for text in texts]
    gts, start = {}, 0
    for key in keys:
        gts[key] = tokenized[start : start + len(references[key])]
        start += len(references[key])
    res = {key: [text] for key, text in zip(keys, tokenized[start:])}
    return gts, res, java


def scores_of_tokenized(
    gts: Mapping[Hashable, list[str]], res: Mapping[Hashable, list[str]], meteor: bool = True
) -> dict[str, float]:
    """The metrics of `caption_metrics` on already tokenized text, in pycocoevalcap's format.

    gts: key -> list of tokenized references; res: key -> [tokenized candidate]. `meteor`
    runs METEOR (Java and pycocoevalcap); the other scores are computed in Python.
    """
    gts, res = dict(gts), dict(res)
    bleu, _ = caption_scores.bleu(gts, res)
    metrics = {name: float(value) for name, value in zip(BLEU_KEYS, bleu)}
    if meteor:
        metrics["meteor"] = meteor_score(gts, res)
    metrics["rouge_l"] = float(caption_scores.rouge_l(gts, res)[0])
    metrics["cider_d"] = float(caption_scores.cider_d(gts, res)[0])
    return metrics


def _as_key(value) -> Hashable:
    value = np.asarray(value)
    return value.tobytes() if value.ndim else value.item()


class CaptionEvaluator(ExampleEvaluator):
    """Decodes generated and reference captions and scores them with `caption_metrics`.

    Each batch holds `reference_key` [B, R, L] and `_mask` [B] (True for real examples), and
    optionally `example_key` [B]; the predict function returns a dict whose `prediction_key`
    entry is int32 [B, T] generated ids (decoding stops at eos). References are either int
    token ids [B, R, L] (0-padded), decoded with the tokenizer, or UTF-8 bytes uint8 [B, R, L]
    (0-padded) taken as the text itself; an all-zero row [L] is an absent reference.

    Examples are keyed by `example_key` when given, else by their position in the evaluation.
    An example seen again (same key) keeps its first candidate and adds any references not yet
    seen, so duplicates count once and rows of one image with one caption each are merged.

    Metrics: bleu_1..bleu_4, meteor (with Java), rouge_l, cider_d, num_examples; BLEU, ROUGE-L
    and CIDEr-D with their intervals when bootstrap_samples > 0 (examples resampled, see
    `caption_intervals`). Per-example table: rouge_l and cider_d of each example, and the
    batch's image-level "group/<attr>" values.

    Attributes:
      tokenizer: has decode(ids) -> str (the task's tokenizer, passed by the trainer).
      prediction_key, reference_key, example_key: the arrays' names, as above.
      java: as in `caption_metrics` (None: use Java when it and pycocoevalcap are there;
        True: require them, checked before training by `requirements`).
    """

    CONTEXT = ("tokenizer",)  # given by the task (see evaluators.build_evaluator)

    @classmethod
    def requirements(cls, eval_config: dict) -> list:
        """What the config entry `eval_config` needs beyond the plain install (setup_check)."""
        return java_requirements(eval_config.get("java"))

    def __init__(
        self,
        tokenizer,
        prediction_key: str = "tokens",
        reference_key: str = "captions",
        example_key: str | None = None,
        java: bool | None = None,
        bootstrap_samples: int = 0,
        confidence: float = 0.95,
        bootstrap_seed: int = 0,
    ):
        super().__init__(bootstrap_samples, confidence, bootstrap_seed)
        self.tokenizer = tokenizer
        self.prediction_key = prediction_key
        self.reference_key = reference_key
        self.example_key = example_key
        self.java = java

    def _reference_texts(self, rows: np.ndarray) -> list[str]:
        present = (rows != 0).any(axis=-1)  # [R]
        if rows.dtype == np.uint8:
            return [bytes(row).rstrip(b"\0").decode(errors="replace") for row in rows[present]]
        return [self.tokenizer.decode(row) for row in rows[present]]

    def collect(self, batches: Iterable) -> tuple[dict, dict]:
        """The decoded (references, candidates) dicts of `evaluate`, keyed by example."""
        references, candidates, _ = self.collect_with_groups(batches)
        return references, candidates

    def collect_with_groups(self, batches: Iterable) -> tuple[dict, dict, dict]:
        """(references, candidates, groups: key -> {attribute: value}), keyed by example."""
        references: dict[Hashable, list[str]] = {}
        candidates: dict[Hashable, str] = {}
        groups: dict[Hashable, dict[str, str]] = {}
        position = 0
        for batch, predicted in batches:
            mask = np.asarray(batch["_mask"], bool).reshape(-1)  # [B]
            tokens = np.asarray(predicted[self.prediction_key])  # [B, T]
            refs = np.asarray(batch[self.reference_key])  # [B, R, L]
            if tokens.ndim != 2 or refs.ndim != 3 or not tokens.shape[0] == refs.shape[0]:
                raise ValueError(
                    f"captioning evaluator: expected predictions[{self.prediction_key!r}] "
                    f"[B, T] and batch[{self.reference_key!r}] [B, R, L], got "
                    f"{tokens.shape} and {refs.shape}"
                )
            ids = np.asarray(batch[self.example_key]) if self.example_key else None
            rows = {
                k[len(GROUP_PREFIX) :]: decode_values(v)
                for k, v in batch.items()
                if k.startswith(GROUP_PREFIX)
            }
            for i in np.flatnonzero(mask):
                key = _as_key(ids[i]) if ids is not None else position + int(i)
                texts = self._reference_texts(refs[i])
                if key not in candidates:
                    candidates[key] = self.tokenizer.decode(tokens[i])
                    references[key] = texts
                    groups[key] = {name: str(values[i]) for name, values in rows.items()}
                else:
                    seen = set(references[key])
                    references[key] = references[key] + [t for t in texts if t not in seen]
            position += mask.shape[0]
        empty = [key for key, texts in references.items() if not texts]
        if empty:
            raise ValueError(f"captioning evaluator: examples {empty[:5]} have no reference")
        return references, candidates, groups

    def score(self, batches: Iterable) -> Scored:
        """Decodes, tokenizes and scores every example (see `caption_intervals`)."""
        references, candidates, groups = self.collect_with_groups(batches)
        if not candidates:  # every metric NaN, as caption_metrics gives for no example
            names = [k for k in METRIC_KEYS if k != "meteor"]
            empty = ExampleTable(np.zeros(0, np.int64), {})
            return Scored(
                empty, lambda w: dict.fromkeys(names, float("nan")), {"num_examples": 0.0}
            )
        gts, res, java = tokenized_corpus(references, candidates, self.java)
        meteor = meteor_score(gts, res) if java else None
        names = sorted({name for values in groups.values() for name in values})
        columns = {n: np.asarray([groups[k].get(n, "") for k in gts], str) for n in names}
        return scored_captions(gts, res, columns, meteor)
