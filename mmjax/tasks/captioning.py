"""Image captioning: a Captioner trained with teacher forcing; greedy, beam or sampled decoding.

One example is one image with all its reference captions: image uint8 [H, W, 3], captions
int32 [R, L] (BOS ... EOS, 0 = padding) for teacher forcing, and the reference text itself as
UTF-8 bytes uint8 [R, text_bytes] (0-padded) for the caption metrics, so the scores never see
the tokenizer's unknown-word ids. The word vocabulary (or SentencePiece model) is built from
the training captions on the first run and saved in the workdir, so a resumed or reloaded run
decodes with the same ids.
"""

from __future__ import annotations

import collections
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mmjax.config_utils import ConfigError
from mmjax.data.datasets import as_text
from mmjax.data.errors import DataError
from mmjax.data.tokenizer import BOS, EOS
from mmjax.data.vocabularies import load_or_build_tokenizer, tokenizer_kind
from mmjax.evaluators.groups import GROUP_PREFIX, encode_values
from mmjax.models import decoding
from mmjax.models.build import build_model
from mmjax.models.captioner import Captioner, captioner_decoder
from mmjax.tasks.base import Task, checked_image
from mmjax.workdir import TOKENIZER_FILES


def text_to_bytes(texts: list[str], size: int) -> np.ndarray:
    """UTF-8 bytes of each text, 0-padded (and cut) to `size`: uint8 [len(texts), size]."""
    out = np.zeros((len(texts), size), np.uint8)
    for i, text in enumerate(texts):
        data = text.encode()[:size]
        out[i, : len(data)] = np.frombuffer(data, np.uint8)
    return out


def bytes_to_text(rows: np.ndarray) -> list[str]:
    """Inverse of `text_to_bytes` for rows uint8 [N, size]; all-zero rows give ''."""
    return [bytes(row).rstrip(b"\0").decode(errors="replace") for row in np.asarray(rows)]


class CaptioningTask(Task):
    """Glues a Captioner built from `config.model` to its loss, decoding and metrics."""

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.max_len = config.data.max_caption_len
        self.text_bytes = config.data.caption_text_bytes
        # Datasets whose images have different numbers of captions (COCO: 5 to 7) batch them
        # as this many rows: the first R captions, then all-padding rows, which neither the
        # loss nor the caption metrics count. None: every image has the same number.
        self.captions_per_image = config.data.get("captions_per_image", None)
        self.label_smoothing = config.label_smoothing
        self.decoding = config.decoding.to_dict()
        self._build_model(vocab_size=1)  # checks config.model before any data is read
        method = self.decoding.get("method")
        if method not in ("greedy", "beam", "sample"):
            raise ConfigError(
                f"config.decoding.method={method!r} is not one of ['beam', 'greedy', 'sample']"
            )
        tokenizer_kind(config)
        self.tokenizer = None

    def _build_model(self, vocab_size: int):
        return build_model(
            self.config.model, "captioner", vocab_size=vocab_size, max_len=self.max_len
        )

    def prepare(self, saved) -> None:
        """Loads or builds the caption tokenizer (`load_or_build_tokenizer`); builds the model."""
        self.tokenizer = load_or_build_tokenizer(self.config, self.dataset, saved, "captions")
        self.model = self._build_model(self.tokenizer.vocab_size)

    def vocabularies(self) -> dict:
        """The tokenizer, by workdir file name."""
        return {TOKENIZER_FILES[self.config.tokenizer.kind]: self.tokenizer}

    @property
    def evaluator_context(self) -> dict:
        """What caption evaluators need from the task: the tokenizer that decodes predictions."""
        return {"tokenizer": self.tokenizer}

    def preprocess(self, record: dict) -> dict[str, np.ndarray]:
        """A decoded record with "image" and "captions" -> one example (see module docstring).

        With data.captions_per_image = R, captions [R, L] and references [R, text_bytes] hold
        the first R captions and then all-zero rows. Raises DataError naming the record for an
        image that is not [H, W, 3] uint8, no caption, or a caption that is empty or longer than
        data.max_caption_len tokens.
        """
        where = f"record {record.get('id', '?')}"
        image = checked_image(record)
        texts = [as_text(c) for c in record.get("captions", ())]
        if not texts:
            raise DataError(f"{where}: has no captions")
        rows = self.captions_per_image or len(texts)
        texts = texts[:rows]
        captions = np.zeros((rows, self.max_len), np.int32)
        try:
            for i, text in enumerate(texts):
                captions[i] = self.tokenizer.encode(text, self.max_len)
        except ValueError as error:
            raise DataError(f"{where}: {error}") from None
        references = np.zeros((rows, self.text_bytes), np.uint8)
        references[: len(texts)] = text_to_bytes(texts, self.text_bytes)
        example = {"image": image, "captions": captions, "references": references}
        example.update(self.dataset.annotations(record))  # what the dataset's evaluators score
        # The image's grouping attributes, for caption metrics per group (disparity).
        for name, value in self.dataset.image_attributes(record).items():
            example[GROUP_PREFIX + name] = encode_values([value], where=where)[0]
        return example

    def init_params(self, rng, batch):
        """Initial parameters for a batch like `batch`."""
        return self.model.init({"params": rng}, batch["image"], batch["captions"])["params"]

    def loss(self, params, batch, rng):
        """Teacher-forced token cross-entropy and token accuracy.

        The mean over the non-padding target tokens of all B*R captions, with the config's label
        smoothing.
        """
        captions = batch["captions"]
        logits, _ = self.model.apply(
            {"params": params},
            batch["image"],
            captions[..., :-1],
            train=True,
            rngs={"dropout": rng},
        )
        targets = captions[..., 1:]
        mask = (targets != 0).astype(jnp.float32)
        labels = optax.smooth_labels(
            jax.nn.one_hot(targets, logits.shape[-1]), self.label_smoothing
        )
        losses = optax.softmax_cross_entropy(logits, labels)
        tokens = jnp.maximum(mask.sum(), 1.0)
        correct = (jnp.argmax(logits, -1) == targets) * mask
        return (losses * mask).sum() / tokens, {"token_accuracy": correct.sum() / tokens}

    def predict(self, params, batch, rng=None):
        """Decoded captions and their log-probability, with the method of config.decoding.

        Returns "tokens" int32 [B, max_len] (no BOS; EOS then 0s) and "logprob" float32 [B].
        """
        encoded = self.model.apply({"params": params}, batch["image"], method=Captioner.encode)
        decoder = captioner_decoder(self.model)
        kw = dict(
            bos_id=BOS,
            eos_id=EOS,
            max_len=self.max_len,
            use_cache=self.decoding.get("use_cache", True),
        )
        method = self.decoding["method"]
        dparams = params["decoder"]
        if method == "greedy":
            tokens, logprob = decoding.greedy(decoder, dparams, encoded, None, **kw)
        elif method == "beam":
            tokens, logprob = decoding.beam_search(
                decoder,
                dparams,
                encoded,
                None,
                beam_size=self.decoding["beam_size"],
                length_penalty=self.decoding["length_penalty"],
                **kw,
            )
        else:
            rng = jax.random.key(0) if rng is None else rng
            tokens, logprob = decoding.sample(
                decoder,
                dparams,
                encoded,
                None,
                rng=rng,
                temperature=self.decoding["temperature"],
                top_k=self.decoding["top_k"] or None,
                **kw,
            )
        return {"tokens": tokens, "logprob": logprob}

    def report(self, metrics: dict[str, float]) -> str:
        """A table of the test caption metrics next to the most-frequent-caption baseline."""
        baseline = most_frequent_caption_baseline(
            self.dataset.source("train", images=False),
            self.dataset.source(self.test_split(), images=False),
        )
        lines = [f"{'metric':<10}{'model':>10}{'most frequent caption':>24}", "-" * 44]
        for name, value in baseline.items():
            model = metrics.get(f"test/{name}", float("nan"))
            lines.append(f"{name:<10}{model:>10.3f}{value:>24.3f}")
        return "\n".join(lines)


@functools.cache
def _metrics():
    from mmjax.evaluators.captioning import caption_metrics

    return caption_metrics


def most_frequent_caption_baseline(train_records, test_records) -> dict[str, float]:
    """Caption metrics on test of always answering the most frequent training caption."""
    counts = collections.Counter(as_text(c) for r in train_records for c in r["captions"])
    caption = min(counts, key=lambda text: (-counts[text], text))
    references = {
        i: [as_text(c) for c in test_records[i]["captions"]] for i in range(len(test_records))
    }
    return _metrics()(references, {i: caption for i in references})
