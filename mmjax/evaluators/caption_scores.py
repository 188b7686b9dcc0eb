"""BLEU-1..4, ROUGE-L and CIDEr-D of tokenized captions, in pure Python, as pycocoevalcap.

The COCO caption evaluation's scorers (pycocoevalcap's Bleu(4), Rouge and Cider), rewritten so
that caption metrics need no extra package; `tests/test_caption_metrics.py` checks them against
pycocoevalcap's own code to 1e-12. Each takes, for keys k of N examples,

  gts: k -> list of tokenized references (words joined by single spaces), at least one;
  res: k -> [tokenized candidate],

and returns (corpus score, per-example scores [N] in the order of the keys).

- BLEU-n (Papineni et al. 2002; pycocoevalcap's "closest" option): over the corpus, clipped
  k-gram matches C_k (a candidate k-gram counts at most as often as in its most generous
  reference) over candidate k-grams G_k, BLEU-n = (prod_{k<=n} (C_k + 1e-15) / (G_k + 1e-9))
  ** (1/n), times the brevity penalty exp(1 - r/c) when the candidates' total length c is
  below r, the sum of each candidate's closest reference length (ties: the shorter).
- ROUGE-L (Lin 2004): per example, LCS-based precision P and recall R, each the best over the
  references, F = (1 + b^2) P R / (R + b^2 P) with b = 1.2; the corpus score is their mean.
- CIDEr-D (Vedantam et al. 2015): n-gram (n = 1..4) tf-idf vectors, idf = log(N / df) with df
  the number of examples whose references hold the n-gram (so a score depends on the whole
  set, and a set of one example scores 0); per reference the clipped cosine similarity
  sum_g min(h_g, r_g) r_g / (|h| |r|), times a Gaussian length penalty exp(-d^2 / (2 * 6^2));
  the mean over n and references, times 10. As in pycocoevalcap, d is the difference of the
  two sentences' bigram counts (their word counts' difference, unless one is empty).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence

_TINY, _SMALL = 1e-15, 1e-9  # pycocoevalcap's guards against 0 / 0 in BLEU
ROUGE_BETA = 1.2
CIDER_SIGMA = 6.0


def ngram_counts(sentence: str, n: int = 4) -> Counter:
    """Counts of the 1..n-grams (tuples of words) of a whitespace-tokenized sentence."""
    words = sentence.split()
    return Counter(
        tuple(words[i : i + k]) for k in range(1, n + 1) for i in range(len(words) - k + 1)
    )


def _check(gts: Mapping, res: Mapping) -> list[Hashable]:
    if set(gts) != set(res):
        raise ValueError("gts and res must have the same keys")
    for key in gts:
        if len(res[key]) != 1 or len(gts[key]) == 0:
            raise ValueError(f"example {key!r}: expected one candidate and at least one reference")
    return list(gts)


def bleu_statistics(
    gts: Mapping[Hashable, Sequence[str]], res: Mapping[Hashable, Sequence[str]], n: int = 4
) -> list[tuple[list[int], list[int], int, int]]:
    """BLEU's sufficient statistics of each example, in the order of the keys.

    (clipped matches [n], candidate n-grams [n], candidate length, closest reference length);
    their sums over a corpus give its BLEU (`bleu_of_statistics`).
    """
    keys = _check(gts, res)
    out = []
    for key in keys:
        candidate = ngram_counts(res[key][0], n)
        test_len = len(res[key][0].split())
        best: dict[tuple, int] = {}
        ref_lens = []
        for reference in gts[key]:
            ref_lens.append(len(reference.split()))
            for gram, count in ngram_counts(reference, n).items():
                best[gram] = max(best.get(gram, 0), count)
        ref_len = min((abs(length - test_len), length) for length in ref_lens)[1]
        own_correct = [0] * n
        for gram, count in candidate.items():
            own_correct[len(gram) - 1] += min(best.get(gram, 0), count)
        own_guess = [max(0, test_len - k) for k in range(n)]
        out.append((own_correct, own_guess, test_len, ref_len))
    return out


def bleu_of_statistics(correct, guess, test_len, ref_len) -> list[float]:
    """BLEU-1..n of summed statistics (sums may be weighted, e.g. by a bootstrap resample)."""
    return _bleu_scores(list(correct), list(guess), test_len, ref_len)


def bleu(
    gts: Mapping[Hashable, Sequence[str]], res: Mapping[Hashable, Sequence[str]], n: int = 4
) -> tuple[list[float], list[list[float]]]:
    """Corpus BLEU-1..n ([n]) and per-example BLEU-1..n ([n][N]), as in the module docstring."""
    statistics = bleu_statistics(gts, res, n)
    correct, guess = [0] * n, [0] * n
    total_test = total_ref = 0
    per_example = [[] for _ in range(n)]
    for own_correct, own_guess, test_len, ref_len in statistics:
        for k in range(n):
            correct[k] += own_correct[k]
            guess[k] += own_guess[k]
        total_test += test_len
        total_ref += ref_len
        for k, score in enumerate(_bleu_scores(own_correct, own_guess, test_len, ref_len)):
            per_example[k].append(score)
    return _bleu_scores(correct, guess, total_test, total_ref), per_example


def _bleu_scores(correct, guess, test_len, ref_len) -> list[float]:
    """BLEU-1..n from clipped matches and guesses per order and the lengths (brevity penalty)."""
    scores, product = [], 1.0
    for k in range(len(correct)):
        # The running product, as pycocoevalcap computes it (same rounding).
        product *= (float(correct[k]) + _TINY) / (float(guess[k]) + _SMALL)
        scores.append(product ** (1.0 / (k + 1)))
    ratio = (test_len + _TINY) / (ref_len + _SMALL)
    if ratio < 1:
        scores = [score * math.exp(1 - 1 / ratio) for score in scores]
    return scores


def _lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence of two word lists (dynamic programming)."""
    previous = [0] * (len(b) + 1)
    for word in a:
        current = [0]
        for j, other in enumerate(b):
            current.append(previous[j] + 1 if word == other else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l(
    gts: Mapping[Hashable, Sequence[str]], res: Mapping[Hashable, Sequence[str]]
) -> tuple[float, list[float]]:
    """Mean ROUGE-L F (beta 1.2) and its per-example values [N], as in the module docstring."""
    keys = _check(gts, res)
    scores = []
    for key in keys:
        candidate = res[key][0].split(" ")  # split(" ") as pycocoevalcap: "" is one token
        precision = recall = 0.0
        for reference in gts[key]:
            words = reference.split(" ")
            lcs = _lcs_length(words, candidate)
            precision = max(precision, lcs / len(candidate))
            recall = max(recall, lcs / len(words))
        if precision and recall:
            beta2 = ROUGE_BETA**2
            scores.append((1 + beta2) * precision * recall / (recall + beta2 * precision))
        else:
            scores.append(0.0)
    return (sum(scores) / len(scores) if scores else float("nan")), scores


def _tfidf(counts: Counter, idf_of, n: int) -> tuple[list[dict], list[float], int]:
    """Per order: the n-gram -> tf * idf vector, its norm; and the sentence's bigram count."""
    vectors = [{} for _ in range(n)]
    norms = [0.0] * n
    bigrams = 0
    for gram, tf in counts.items():
        order = len(gram) - 1
        value = float(tf) * idf_of(gram)
        vectors[order][gram] = value
        norms[order] += value**2
        if order == 1:
            bigrams += tf
    return vectors, [math.sqrt(x) for x in norms], bigrams


def _cider_similarity(hyp, ref, n: int) -> list[float]:
    """Clipped cosine similarity per order, times the Gaussian length penalty."""
    (vec_h, norm_h, len_h), (vec_r, norm_r, len_r) = hyp, ref
    penalty = math.exp(-(float(len_h - len_r) ** 2) / (2 * CIDER_SIGMA**2))
    values = []
    for k in range(n):
        value = 0.0
        for gram, weight in vec_h[k].items():
            other = vec_r[k].get(gram, 0.0)
            value += min(weight, other) * other
        if norm_h[k] != 0 and norm_r[k] != 0:
            value /= norm_h[k] * norm_r[k]
        values.append(value * penalty)
    return values


def cider_d(
    gts: Mapping[Hashable, Sequence[str]], res: Mapping[Hashable, Sequence[str]], n: int = 4
) -> tuple[float, list[float]]:
    """Mean CIDEr-D and its per-example values [N], as in the module docstring."""
    keys = _check(gts, res)
    references = {key: [ngram_counts(r, n) for r in gts[key]] for key in keys}
    document_frequency = Counter()
    for key in keys:
        document_frequency.update({gram for counts in references[key] for gram in counts})
    log_n = math.log(float(len(keys))) if keys else 0.0

    def idf_of(gram) -> float:
        return log_n - math.log(max(1.0, float(document_frequency[gram])))

    scores = []
    for key in keys:
        hyp = _tfidf(ngram_counts(res[key][0], n), idf_of, n)
        total = [0.0] * n
        for counts in references[key]:
            for k, value in enumerate(_cider_similarity(hyp, _tfidf(counts, idf_of, n), n)):
                total[k] += value
        scores.append(sum(total) / n / len(references[key]) * 10.0)
    return (sum(scores) / len(scores) if scores else float("nan")), scores
