"""Image-text retrieval: Recall@K in both directions over a whole test split.

Scores are dot products of the embeddings (cosine similarities when they are L2-normalised;
`RetrievalEvaluator` normalises by default). Each image may own several captions: caption t
belongs to image `text_image_ids[t]`.

  image->text (i2t): for each image that owns at least one caption, a hit at K when one of its
      captions is among the K best-scored captions;
  text->image (t2i): for each caption, a hit at K when its image is among the K best-scored
      images.

Ties are pessimistic: a wrong candidate scored exactly equal to the right one counts as ranked
above it. The rank of the right answer is the number of wrong candidates scored >= it (for
i2t, >= the best of the image's captions), and a query hits at K when that rank is < K. So a
model that gives every candidate the same score gets Recall@K = 0 (while K < the number of wrong
candidates), never credit for an arbitrary tie-break. Images with no caption are candidates for
t2i but are not i2t queries.

Per caption slot (`caption_slots`, a name for each of the R caption slots of an image, e.g. one
per caption template): "t2i_r{K}/<name>" is text->image recall over that slot's caption queries
(against every image, as above), and "i2t_r{K}/<name>" image->text recall with only that slot's
captions as candidates (each image's own caption among the split's captions of that slot).

Similarities are computed `chunk_size` queries at a time ([chunk_size, N] scores), so the full
[N_images, N_texts] matrix is never held when the split is large. The result does not depend on
the chunk size, up to the matmul's float rounding of individual scores.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mmjax.evaluators.bootstrap import weighted_mean
from mmjax.evaluators.examples import ExampleEvaluator, ExampleTable, Scored
from mmjax.evaluators.groups import batch_groups, concat_groups


def _chunks(n: int, chunk_size: int):
    for start in range(0, n, chunk_size):
        yield start, min(n, start + chunk_size)


def _check(image_emb, text_emb, text_image_ids, ks, chunk_size):
    if image_emb.ndim != 2 or text_emb.ndim != 2 or image_emb.shape[1] != text_emb.shape[1]:
        raise ValueError(
            f"recall_at_k: expected image [Ni, D] and text [Nt, D] embeddings, got "
            f"{image_emb.shape} and {text_emb.shape}"
        )
    if text_image_ids.shape != (text_emb.shape[0],):
        raise ValueError(
            f"recall_at_k: text_image_ids has shape {text_image_ids.shape}, expected "
            f"({text_emb.shape[0]},)"
        )
    if text_image_ids.size and (
        text_image_ids.min() < 0 or text_image_ids.max() >= image_emb.shape[0]
    ):
        raise ValueError(f"recall_at_k: text_image_ids must lie in [0, {image_emb.shape[0]})")
    if not ks or any(int(k) < 1 for k in ks):
        raise ValueError(f"recall_at_k: ks must be positive integers, got {tuple(ks)}")
    if int(chunk_size) < 1:
        raise ValueError(f"recall_at_k: chunk_size must be positive, got {chunk_size}")


def image_to_text_ranks(
    image_emb: np.ndarray, text_emb: np.ndarray, text_image_ids: np.ndarray, chunk_size: int
) -> np.ndarray:
    """Pessimistic rank of each image's best caption, [Ni] int (-1 for captionless images).

    Args:
      image_emb: [Ni, D] image embeddings.
      text_emb: [Nt, D] caption embeddings.
      text_image_ids: [Nt] int, the image each caption belongs to.
      chunk_size: number of image queries scored at a time.

    Returns:
      [Ni] the number of other images' captions scored >= the image's best caption.
    """
    ranks = np.full(image_emb.shape[0], -1, np.int64)
    for start, stop in _chunks(image_emb.shape[0], chunk_size):
        scores = image_emb[start:stop] @ text_emb.T  # [c, Nt]
        owned = text_image_ids[None, :] == np.arange(start, stop)[:, None]  # [c, Nt]
        # Any owned caption in the top K is a hit, so the best one decides.
        best = np.where(owned, scores, -np.inf).max(axis=1, initial=-np.inf)  # [c]
        wrong_above = np.sum(~owned & (scores >= best[:, None]), axis=1)
        ranks[start:stop] = np.where(owned.any(axis=1), wrong_above, -1)
    return ranks


def text_to_image_ranks(
    image_emb: np.ndarray, text_emb: np.ndarray, text_image_ids: np.ndarray, chunk_size: int
) -> np.ndarray:
    """Pessimistic rank of each caption's image, [Nt] int.

    Args:
      image_emb: [Ni, D] image embeddings.
      text_emb: [Nt, D] caption embeddings.
      text_image_ids: [Nt] int, the image each caption belongs to.
      chunk_size: number of caption queries scored at a time.

    Returns:
      [Nt] the number of other images scored >= the caption's own image.
    """
    ranks = np.zeros(text_emb.shape[0], np.int64)
    for start, stop in _chunks(text_emb.shape[0], chunk_size):
        scores = text_emb[start:stop] @ image_emb.T  # [c, Ni]
        ids = text_image_ids[start:stop]
        right = scores[np.arange(stop - start), ids]  # [c]
        wrong = np.arange(image_emb.shape[0])[None, :] != ids[:, None]
        ranks[start:stop] = np.sum(wrong & (scores >= right[:, None]), axis=1)
    return ranks


def _chance_any_of(num_candidates: int, num_right: np.ndarray, k: int) -> np.ndarray:
    """P(at least one of m right candidates in the top k of a uniformly random order of N).

    1 - C(N - m, k) / C(N, k) = 1 - prod_{j<k} (N - m - j) / (N - j); K / N when m = 1.
    """
    j = np.arange(min(k, num_candidates))
    miss = np.prod(
        np.clip((num_candidates - num_right[:, None] - j) / (num_candidates - j), 0, None), axis=1
    )
    return 1 - miss


def recall_at_k(
    image_emb: np.ndarray,
    text_emb: np.ndarray,
    text_image_ids: np.ndarray,
    ks: Sequence[int] = (1, 5, 10),
    chunk_size: int = 1024,
) -> dict[str, float]:
    """Recall@K for image->text and text->image retrieval, with pessimistic ties.

    Args:
      image_emb: [Ni, D] image embeddings (normalise them first for cosine similarity).
      text_emb: [Nt, D] caption embeddings.
      text_image_ids: [Nt] int in [0, Ni), the image each caption belongs to.
      ks: the cut-offs K.
      chunk_size: number of queries scored at a time (bounds memory to chunk_size x N scores).

    Returns:
      For each K: "i2t_r{K}" and "t2i_r{K}" (fractions of queries that hit), and the expected
      recall of a uniformly random ranking, "i2t_chance_r{K}" (mean over image queries of
      1 - C(Nt - m, K) / C(Nt, K) for an image with m captions, i.e. K / Nt with one caption)
      and "t2i_chance_r{K}" (K / Ni); plus "i2t_queries" and "t2i_queries", the query counts.
      Recalls are NaN when there are no queries.
    """
    image_emb = np.asarray(image_emb)
    text_emb = np.asarray(text_emb)
    text_image_ids = np.asarray(text_image_ids).astype(np.int64)
    _check(image_emb, text_emb, text_image_ids, ks, chunk_size)
    chunk_size = int(chunk_size)
    num_images, num_texts = image_emb.shape[0], text_emb.shape[0]
    i2t = image_to_text_ranks(image_emb, text_emb, text_image_ids, chunk_size)
    i2t = i2t[i2t >= 0]  # captionless images are not queries
    t2i = text_to_image_ranks(image_emb, text_emb, text_image_ids, chunk_size)
    captions_per_image = np.bincount(text_image_ids, minlength=num_images)
    captions_per_image = captions_per_image[captions_per_image > 0]
    nan = float("nan")
    result = {}
    for k in ks:
        k = int(k)
        result[f"i2t_r{k}"] = float(np.mean(i2t < k)) if i2t.size else nan
        result[f"t2i_r{k}"] = float(np.mean(t2i < k)) if t2i.size else nan
        result[f"i2t_chance_r{k}"] = (
            float(np.mean(_chance_any_of(num_texts, captions_per_image, k))) if i2t.size else nan
        )
        result[f"t2i_chance_r{k}"] = min(1.0, k / num_images) if num_images else nan
    result["i2t_queries"] = float(i2t.size)
    result["t2i_queries"] = float(t2i.size)
    return result


class RetrievalEvaluator(ExampleEvaluator):
    """Accumulates image and caption embeddings over padded eval batches, then scores Recall@K.

    Each (batch, predictions) pair holds `_mask` [B] in the batch (real rows), and in the
    predictions `image_key` [B, D] and `text_key` [B, R, D] (R caption slots per image; [B, D]
    means one caption each). The valid caption slots are `text_mask_key` [B, R] (bool), looked
    up in the predictions, then in the batch; when absent every slot is valid. Image i of the
    split is the i-th real row seen; its valid captions belong to it.

    Metrics: see `recall_at_k` (i2t_r{K}, t2i_r{K}, their chance levels, query counts); with
    `caption_slots` (a name per caption slot r), the recalls per slot, "t2i_r{K}/<name>" and
    "i2t_r{K}/<name>" (see the module docstring); the recalls with their intervals when
    bootstrap_samples > 0 (images resampled, each with its captions; ranks stay those against
    the whole split). Per-example table: one row per image
    query (scores i2t_r{K}: 1/0 hit) then one per caption query (t2i_r{K}), NaN in the other
    direction's columns; groups: the batch's image-level "group/<attr>" [B, GROUP_BYTES].
    """

    def __init__(
        self,
        ks: Sequence[int] = (1, 5, 10),
        chunk_size: int = 1024,
        image_key: str = "image_embedding",
        text_key: str = "text_embedding",
        text_mask_key: str = "text_mask",
        normalize: bool = True,
        caption_slots: Sequence[str] = (),
        bootstrap_samples: int = 0,
        confidence: float = 0.95,
        bootstrap_seed: int = 0,
    ):
        super().__init__(bootstrap_samples, confidence, bootstrap_seed)
        self.ks = tuple(int(k) for k in ks)
        self.chunk_size = int(chunk_size)
        self.image_key = image_key
        self.text_key = text_key
        self.text_mask_key = text_mask_key
        self.normalize = normalize
        self.caption_slots = tuple(str(name) for name in caption_slots)

    def collect(self, batches) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        """The embeddings, owners, slots and groups of the real rows of all batches.

        (image embeddings [Ni, D], caption embeddings [Nt, D], caption owners [Nt], caption
        slots [Nt] (each caption's index r among its image's R slots), image groups:
        attribute -> str [Ni]).
        """
        images, texts, text_ids, slots, group_parts, sizes = [], [], [], [], [], []
        num_images = 0
        for batch, predicted in batches:
            mask = np.asarray(batch["_mask"], bool)
            image = np.asarray(predicted[self.image_key])[mask]  # [b, D]
            text = np.asarray(predicted[self.text_key])
            if text.ndim == 2:
                text = text[:, None, :]
            text = text[mask]  # [b, R, D]
            if self.text_mask_key in predicted:
                valid = np.asarray(predicted[self.text_mask_key], bool)[mask]
            elif self.text_mask_key in batch:
                valid = np.asarray(batch[self.text_mask_key], bool)[mask]
            else:
                valid = np.ones(text.shape[:2], bool)
            owner = np.broadcast_to(num_images + np.arange(image.shape[0])[:, None], valid.shape)
            slot = np.broadcast_to(np.arange(valid.shape[1])[None, :], valid.shape)
            images.append(image)
            texts.append(text[valid])
            text_ids.append(owner[valid])
            slots.append(slot[valid])
            group_parts.append(batch_groups(batch, mask))
            sizes.append(image.shape[0])
            num_images += image.shape[0]
        if not images:
            raise ValueError("RetrievalEvaluator: no batches to evaluate")
        image_emb = np.concatenate(images).astype(np.float32)
        text_emb = np.concatenate(texts).astype(np.float32)
        if self.normalize:
            image_emb = _l2_normalize(image_emb)
            text_emb = _l2_normalize(text_emb)
        groups = concat_groups(group_parts, sizes)
        owners = np.concatenate(text_ids).astype(np.int64)
        return image_emb, text_emb, owners, np.concatenate(slots).astype(np.int64), groups

    def score(self, batches) -> Scored:
        """Ranks every query once; the recalls under example weights are means of hits."""
        image_emb, text_emb, owners, slots, groups = self.collect(batches)
        constants = recall_at_k(image_emb, text_emb, owners, self.ks, self.chunk_size)
        i2t = image_to_text_ranks(image_emb, text_emb, owners, self.chunk_size)  # [Ni], -1
        t2i = text_to_image_ranks(image_emb, text_emb, owners, self.chunk_size)  # [Nt]
        num_images, num_texts = len(i2t), len(t2i)
        image_rows, text_rows = np.full(num_texts, np.nan), np.full(num_images, np.nan)
        scores = {}
        for k in self.ks:
            hits = np.where(i2t >= 0, (i2t < k).astype(np.float64), np.nan)
            scores[f"i2t_r{k}"] = np.concatenate([hits, image_rows])
            scores[f"t2i_r{k}"] = np.concatenate([text_rows, (t2i < k).astype(np.float64)])
        scores.update(self._slot_scores(image_emb, text_emb, owners, slots, t2i))
        clusters = np.concatenate([np.arange(num_images), owners])
        table = ExampleTable(
            clusters, scores, {a: np.concatenate([v, v[owners]]) for a, v in groups.items()}
        )
        for name in scores:
            constants.pop(name, None)

        def statistic(weights: np.ndarray) -> dict[str, float]:
            return {name: weighted_mean(values, weights) for name, values in scores.items()}

        return Scored(table, statistic, constants)

    def _slot_scores(self, image_emb, text_emb, owners, slots, t2i) -> dict[str, np.ndarray]:
        """Per-example hits of each caption slot's recalls, NaN outside its queries.

        Rows as in `score`: the Ni image queries, then the Nt caption queries. Raises
        ValueError when there are more slots than names (an unnamed slot would go unscored).
        """
        if not self.caption_slots:
            return {}
        if slots.size and slots.max() >= len(self.caption_slots):
            raise ValueError(
                f"RetrievalEvaluator: captions fill {slots.max() + 1} slots but caption_slots "
                f"names {len(self.caption_slots)}: {list(self.caption_slots)}"
            )
        num_images, num_texts = image_emb.shape[0], text_emb.shape[0]
        scores = {}
        for r, name in enumerate(self.caption_slots):
            in_slot = slots == r
            i2t = image_to_text_ranks(
                image_emb, text_emb[in_slot], owners[in_slot], self.chunk_size
            )  # [Ni], -1 for an image without a caption in this slot
            for k in self.ks:
                image_hits = np.where(i2t >= 0, (i2t < k).astype(np.float64), np.nan)
                text_hits = np.where(in_slot, (t2i < k).astype(np.float64), np.nan)
                scores[f"i2t_r{k}/{name}"] = np.concatenate(
                    [image_hits, np.full(num_texts, np.nan)]
                )
                scores[f"t2i_r{k}/{name}"] = np.concatenate(
                    [np.full(num_images, np.nan), text_hits]
                )
        return scores


def _l2_normalize(x: np.ndarray) -> np.ndarray:
    # The epsilon keeps an all-zero embedding at zero rather than NaN.
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
