"""Image-text retrieval: a DualEncoder trained with a contrastive loss (CLIP or SigLIP).

One example is one image with all its captions: image uint8 [H, W, 3] and captions int32
[R, L] (BOS ... EOS, 0 = padding; R = data.captions_per_image, an all-padding row is an absent
caption). The word vocabulary is built from the training captions on the first run and saved in
the workdir (`mmjax.data.vocabularies.load_or_build_tokenizer`).

Training pairs. Each step pairs every image of the batch with ONE of its captions, drawn
uniformly (among the real ones) from the step's rng, which the trainer derives from
config.seed and the step number and keeps in checkpoints: the choice is deterministic, resumes
exactly, does not depend on the number of devices, and over the epochs each image meets all its
captions. Why one caption and not all R: with one per image the positives are exactly the
diagonal, so the CLIP and SigLIP losses of `mmjax.models.contrastive` (and their sharded
versions) apply unchanged and no image's own caption is ever a negative; and the text tower
(L = 64 tokens, about 40% of a step) runs on B texts per step instead of R * B. (A hash of
(record id, epoch) in `preprocess` would also do, but preprocessing never sees the epoch.)

Negatives are the other images' captions. Every scene has one object of each colour, so colour
words alone never tell two scenes apart: captions differ only in which shape each colour has and
where it is, and the model must bind colour to shape and position on both sides. Random batches
rarely hold two scenes that differ in one object's shape or place, so with
config.hard_negatives each image also meets its own caption with one word changed
(`mmjax.tasks.hard_negatives`), made anew each step.

Loss (config.loss): "softmax" (CLIP) or "sigmoid" (SigLIP), over the global batch. When the
batch is split over several devices (the trainer traces the loss inside
`partitioning.activation_sharding(mesh, rules)`), the sharded loss of
`mmjax.models.contrastive` runs over the mesh axes of the "batch" rule, so every image still
meets every caption of the global batch; on one device the unsharded loss.

Predictions: "image_embedding" [B, D], "text_embedding" [B, R, D] (every caption) and
"text_mask" [B, R], for the "retrieval" evaluator (Recall@K both ways over the whole split).
Examples also carry the dataset's annotations (`Dataset.annotations`), the labels the
"zero_shot" evaluator scores; it embeds its class prompts with `embed_class_texts`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from mmjax.config_utils import ConfigError
from mmjax.data.datasets import as_text
from mmjax.data.errors import DataError
from mmjax.data.tokenizer import UNK
from mmjax.data.vocabularies import load_or_build_tokenizer, tokenizer_kind
from mmjax.evaluators.groups import GROUP_PREFIX, encode_values
from mmjax.models import contrastive, partitioning
from mmjax.models.build import build_model
from mmjax.models.dual_encoder import DualEncoder
from mmjax.tasks import hard_negatives
from mmjax.tasks.base import Task, checked_image
from mmjax.workdir import TOKENIZER_FILES

LOSSES = ("sigmoid", "softmax")


def active_batch_mesh() -> tuple[jax.sharding.Mesh | None, tuple[str, ...]]:
    """(mesh, mesh axes of the batch) of the enclosing activation-sharding context, if any.

    The trainer traces its steps inside `partitioning.activation_sharding(mesh, rules)`; the
    rule for "batch" names the mesh axes the batch is split over. Returns (None, ()) outside
    it. (`jax.sharding.get_abstract_mesh()` is empty there: the trainer places arrays with
    NamedShardings but sets no mesh context.)
    """
    # partitioning offers no public accessor for its context yet, so read its state here.
    active = partitioning.active()
    if active is None:
        return None, ()
    mesh, rules = active
    return mesh, tuple(a for a in rules.get("batch", ()) if a in mesh.shape)


def contrastive_loss(kind: str, img: jax.Array, txt: jax.Array, scale, bias) -> jax.Array:
    """The `kind` ("softmax" or "sigmoid") loss of img [B, D] and txt [B, D] (diagonal pairs).

    Sharded over the global batch when the enclosing mesh (`active_batch_mesh`) splits the batch
    over more than one device, else the unsharded loss; the two give the same scalar.
    """
    mesh, axes = active_batch_mesh()
    if mesh is None or math.prod(mesh.shape[a] for a in axes) == 1:
        if kind == "softmax":
            return contrastive.softmax_contrastive_loss(img, txt, scale)
        return contrastive.sigmoid_contrastive_loss(img, txt, scale, bias)
    if kind == "softmax":
        return contrastive.sharded_softmax_contrastive_loss(img, txt, scale, mesh, axes)
    return contrastive.sharded_sigmoid_contrastive_loss(img, txt, scale, bias, mesh, axes)


def sample_captions(captions: jax.Array, rng) -> jax.Array:
    """One real caption per image, drawn uniformly with `rng`: int [B, R, L] -> [B, L].

    A caption is real when its first token is not padding; every image needs one.
    """
    real = captions[..., 0] != 0  # [B, R]
    choice = jax.random.categorical(rng, jnp.where(real, 0.0, -jnp.inf))  # [B]
    return jnp.take_along_axis(captions, choice[:, None, None], axis=1)[:, 0]


class RetrievalTask(Task):
    """Glues a DualEncoder built from `config.model` to a contrastive loss and embeddings."""

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.max_len = config.data.max_caption_len
        self.captions_per_image = config.data.captions_per_image
        self.loss_kind = config.loss
        if self.loss_kind not in LOSSES:
            raise ConfigError(f"config.loss={self.loss_kind!r} is not one of {list(LOSSES)}")
        tokenizer_kind(config)
        # Groups of word pairs, one hard negative caption per image and group (hard_negatives).
        self.hard_groups = list(config.get("hard_negatives", ()))
        hard_negatives.parse_groups(self.hard_groups)  # a malformed group fails before any data
        self._build_model(vocab_size=1)  # checks config.model before any data is read
        self.tokenizer = None
        self.partners = None

    def _build_model(self, vocab_size: int):
        return build_model(
            self.config.model, "dual_encoder", vocab_size=vocab_size, max_len=self.max_len
        )

    def prepare(self, saved) -> None:
        """Loads or builds the caption tokenizer (`load_or_build_tokenizer`); builds the model."""
        self.tokenizer = load_or_build_tokenizer(self.config, self.dataset, saved, "captions")
        self.model = self._build_model(self.tokenizer.vocab_size)
        self.partners = jnp.asarray(
            hard_negatives.partner_tables(
                self.hard_groups, self._word_id, self.tokenizer.vocab_size
            )
        )

    def _word_id(self, word: str) -> int | None:
        """The id of `word` when the tokenizer encodes it as one known token, else None."""
        ids = self.tokenizer.tokens_to_ids(word)
        unk = getattr(self.tokenizer, "unk_id", UNK)
        return ids[0] if len(ids) == 1 and ids[0] != unk else None

    def vocabularies(self) -> dict:
        """The tokenizer, by workdir file name."""
        return {TOKENIZER_FILES[self.config.tokenizer.kind]: self.tokenizer}

    @property
    def evaluator_context(self) -> dict:
        """The text embedder of the "zero_shot" evaluator."""
        return {"text_embedder": self.embed_class_texts}

    def embed_class_texts(self, params, texts, chunk: int = 256) -> np.ndarray:
        """Unit-norm embeddings [N, D] float32 of `texts` (N strings) under `params`.

        Texts are encoded as captions are (BOS ... EOS, padded to data.max_caption_len).
        Raises ValueError naming a text with words the tokenizer does not know: a prompt that
        silently became <unk> would stand for another class than the one it names.
        """
        rows = []
        for text in texts:
            if getattr(self.tokenizer, "unk_id", UNK) in self.tokenizer.tokens_to_ids(text):
                raise ValueError(f"zero_shot prompt {text!r} has words outside the vocabulary")
            rows.append(self.tokenizer.encode(text, self.max_len))
        if getattr(self, "_embed_texts", None) is None:
            self._embed_texts = jax.jit(
                lambda p, t: self.model.apply({"params": p}, t, method=DualEncoder.embed_texts)
            )
        tokens = np.stack(rows)
        return np.concatenate(
            [
                np.asarray(self._embed_texts(params, tokens[i : i + chunk]))
                for i in range(0, len(tokens), chunk)
            ]
        )

    def preprocess(self, record: dict) -> dict[str, np.ndarray]:
        """A decoded record with "image" and "captions" -> {"image", "captions" [R, L]}.

        Plus "group/<attr>" uint8 [GROUP_BYTES] for each of the dataset's image attributes.

        Records with fewer than R captions get all-padding rows; of more (COCO has 5 to 7), the
        first R are kept. Raises DataError naming the record for an image that is not
        [H, W, 3] uint8, no caption, or a caption that is empty or longer than
        data.max_caption_len tokens.
        """
        where = f"record {record.get('id', '?')}"
        image = checked_image(record)
        texts = [as_text(c) for c in record.get("captions", ())][: self.captions_per_image]
        if not texts:
            raise DataError(f"{where}: has no captions")
        captions = np.zeros((self.captions_per_image, self.max_len), np.int32)
        try:
            for i, text in enumerate(texts):
                captions[i] = self.tokenizer.encode(text, self.max_len)
        except ValueError as error:
            raise DataError(f"{where}: {error}") from None
        example = {"image": image, "captions": captions, **self.dataset.annotations(record)}
        # The image's grouping attributes, for Recall@K per group (the disparity evaluator).
        for name, value in self.dataset.image_attributes(record).items():
            example[GROUP_PREFIX + name] = encode_values([value], where=where)[0]
        return example

    def init_params(self, rng, batch):
        """Initial parameters for a batch like `batch`."""
        return self.model.init({"params": rng}, batch["image"], batch["captions"][:, 0])["params"]

    def loss(self, params, batch, rng):
        """The contrastive loss (config.loss) of each image and one of its captions.

        With config.hard_negatives, each image's caption with one word swapped per group is an
        extra negative (`mmjax.tasks.hard_negatives`); metric "hard_i2t_accuracy": the
        fraction of (image, valid hard negative) pairs where the true caption scores higher.

        Metrics: "logit_scale", "logit_bias" (sigmoid only) and "batch_i2t_accuracy", the
        fraction of images whose own caption scores highest among the batch's captions.
        """
        caption_rng, dropout_rng = jax.random.split(rng)
        tokens = sample_captions(batch["captions"], caption_rng)  # [B, L]
        swap_rng = jax.random.fold_in(caption_rng, 1)
        groups = len(self.hard_groups)
        if groups:
            rngs = jax.random.split(swap_rng, groups)
            hard, valid = jax.vmap(hard_negatives.make_hard, (None, 0, 0))(
                tokens, self.partners, rngs
            )  # [G, B, L], [G, B]
            tokens = jnp.concatenate([tokens, hard.reshape(-1, tokens.shape[-1])])
        out, _ = self.model.apply(
            {"params": params}, batch["image"], tokens, train=True, rngs={"dropout": dropout_rng}
        )
        img, txt = out["image"], out["text"]
        metrics = {}
        if groups:
            txt, hard = txt[: img.shape[0]], txt[img.shape[0] :].reshape(groups, *img.shape)
            loss = self._hard_loss(img, txt, hard, valid, out)
            margin = jnp.sum(img * txt, -1) > jnp.einsum("id,gid->gi", img, hard)  # [G, B]
            metrics["hard_i2t_accuracy"] = jnp.sum(margin & valid) / jnp.maximum(valid.sum(), 1)
        else:
            loss = contrastive_loss(self.loss_kind, img, txt, out["logit_scale"], out["logit_bias"])
        # [B, B] similarities of the global batch: small next to the towers, and a direct
        # read-out of how well the batch is sorted.
        hits = jnp.argmax(img @ txt.T, axis=1) == jnp.arange(img.shape[0])
        metrics.update(logit_scale=out["logit_scale"], batch_i2t_accuracy=hits.mean())
        if self.loss_kind == "sigmoid":
            metrics["logit_bias"] = out["logit_bias"]
        return loss, metrics

    def _hard_loss(self, img, txt, hard, valid, out):
        """The config.loss with hard negatives hard [G, B, D] (valid [G, B])."""
        if self.loss_kind == "softmax":
            return hard_negatives.softmax_loss(img, txt, hard, valid, out["logit_scale"])
        return hard_negatives.sigmoid_loss(
            img, txt, hard, valid, out["logit_scale"], out["logit_bias"]
        )

    def predict(self, params, batch, rng=None):
        """Embeddings of every image and every caption, for the retrieval evaluator.

        Returns "image_embedding" [B, D], "text_embedding" [B, R, D] (unit-norm float32) and
        "text_mask" [B, R] (bool, False for absent captions).
        """
        del rng
        variables = {"params": params}
        captions = batch["captions"]
        return {
            "image_embedding": self.model.apply(
                variables, batch["image"], method=DualEncoder.embed_images
            ),
            "text_embedding": self.model.apply(variables, captions, method=DualEncoder.embed_texts),
            "text_mask": captions[..., 0] != 0,
        }

    def report(self, metrics: dict[str, float]) -> str:
        """A table of test Recall@K in both directions next to a random ranking's."""
        lines = [f"{'test recall':<14}{'model':>8}{'chance':>8}", "-" * 30]
        for direction in ("i2t", "t2i"):
            for k in (1, 5, 10):
                model = metrics.get(f"test/{direction}_r{k}", float("nan"))
                chance = metrics.get(f"test/{direction}_chance_r{k}", float("nan"))
                lines.append(f"{direction} R@{k:<9}{100 * model:>8.1f}{100 * chance:>8.1f}")
        return "\n".join(lines)
