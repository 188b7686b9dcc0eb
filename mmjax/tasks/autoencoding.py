"""Multimodal autoencoding: image and text -> one vector z -> both again (cross-modal too).

One example is one scene: "image" uint8 [H, W, 3]; "text" int32 [L], caption
data.caption_index of the scene (BOS ... EOS, 0 = padding); and the dataset's annotations
(`Dataset.annotations`), e.g. "probe_labels" int32 [T], the attributes a linear probe on z
predicts. (On the built-in dataset the default caption, the fourth, "from left to right:
orange circle, ...", is the only one that is a function of the image; the probe labels are
each object's shape and whether it is on the left and on top.)

The loss is the reconstruction error of both modalities from z:

    L = w_image * mean over pixels and channels of (I - Î)^2   (I in [0, 1]; Î unclipped)
      + w_text  * mean over the real target tokens of -log p(T_t | z, T_<t)

(the text term is the token cross-entropy of the text decoder, teacher-forced; the weights are
config.loss_weights.image / .text). Every example reconstructs both modalities whichever of
them reached the encoder (modality dropout), which is what trains cross-modal generation.

`predict` returns, for each source s of z -- "joint" (image and text), "from_image" (the image
alone) and "from_text" (the text alone):
  "z_<s>" float32 [B, z_dim];
  "image_<s>" float32 [B, H, W, 3], decoded from that z (the most likely image: the sprite
    decoder places each sprite where it is likeliest, see `SpriteImageDecoder`) and clipped
    to [0, 1] (the decoder's output is linear; clipping can only bring it closer to a true
    image);
  "text_<s>" int32 [B, L-1], greedy text from that z (no BOS; EOS, then 0s);
  "text_correct_<s>" int32 [B], teacher-forced target tokens whose argmax is right;
and "z_random_<s>", z of the same architecture freshly initialised from another seed
(`config.probe_random_seed`, never trained): the baseline of the linear probe.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mmjax.config_utils import ConfigError
from mmjax.data.errors import DataError
from mmjax.data.tokenizer import BOS, EOS
from mmjax.data.vocabularies import load_or_build_tokenizer, tokenizer_kind
from mmjax.models import decoding
from mmjax.models.autoencoder import MultimodalAutoencoder, autoencoder_text_decoder
from mmjax.models.build import build_model
from mmjax.tasks.base import Task
from mmjax.workdir import TOKENIZER_FILES

SOURCES = ("joint", "from_image", "from_text")
PROBE_ATTRIBUTES = ("shape", "left", "top")


def reconstruction_loss(
    images: jax.Array,
    reconstructions: jax.Array,
    text: jax.Array,
    logits: jax.Array,
    image_weight: float = 1.0,
    text_weight: float = 1.0,
    pad_id: int = 0,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The autoencoder's loss (module docstring) and its parts.

    Args:
      images: [B, H, W, 3] uint8 (or float in [0, 1]), the inputs I.
      reconstructions: [B, H, W, 3] float, Î (the decoder's linear output, unclipped).
      text: [B, L] int32 token ids, BOS first; the targets are text[:, 1:].
      logits: [B, L-1, V] next-token logits for those targets.
      image_weight, text_weight: the weights of the two terms.
      pad_id: padding id, left out of the text term.

    Returns:
      (loss, {"image_mse", "text_ce", "token_accuracy"}) scalars.
    """
    target_image = jnp.asarray(images)
    if target_image.dtype == jnp.uint8:
        target_image = target_image.astype(jnp.float32) / 255.0
    image_mse = jnp.mean(jnp.square(reconstructions.astype(jnp.float32) - target_image))
    targets = text[:, 1:]
    mask = (targets != pad_id).astype(jnp.float32)
    count = jnp.maximum(mask.sum(), 1.0)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), targets)
    text_ce = (losses * mask).sum() / count
    correct = ((jnp.argmax(logits, -1) == targets) * mask).sum() / count
    loss = image_weight * image_mse + text_weight * text_ce
    return loss, {"image_mse": image_mse, "text_ce": text_ce, "token_accuracy": correct}


class AutoencodingTask(Task):
    """Glues a MultimodalAutoencoder built from `config.model` to its loss and predictions."""

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.caption_index = config.data.caption_index
        self.max_len = config.data.max_text_len
        self.image_size = config.data.image_size
        self.image_weight = float(config.loss_weights.image)
        self.text_weight = float(config.loss_weights.text)
        self.probe_random_seed = int(config.probe_random_seed)
        self._build_model(vocab_size=1)  # checks config.model before any data is read
        rates = config.model.get("image_only_rate", 0.0) + config.model.get("text_only_rate", 0.0)
        if not 0.0 <= rates <= 1.0:
            raise ConfigError(
                f"config.model.image_only_rate + text_only_rate = {rates} must lie in [0, 1]"
            )
        if not 0 <= self.caption_index < 5:
            raise ConfigError(f"config.data.caption_index={self.caption_index} must be in 0..4")
        tokenizer_kind(config)
        self.tokenizer = None

    def _build_model(self, vocab_size: int):
        return build_model(
            self.config.model,
            "autoencoder",
            vocab_size=vocab_size,
            max_len=self.max_len,
            image_size=self.image_size,
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
        """The tokenizer, to decode texts."""
        return {"tokenizer": self.tokenizer}

    def preprocess(self, record: dict) -> dict[str, np.ndarray]:
        """A decoded record -> {"image" uint8 [H, W, 3], "text" int32 [L], annotations...}.

        Raises DataError naming the record for an image that is not uint8 [S, S, 3] (S =
        data.image_size) or a caption that does not fit in data.max_text_len tokens.
        """
        where = f"record {record.get('id', '?')}"
        image = np.asarray(record["image"])
        if image.dtype != np.uint8 or image.shape != (self.image_size, self.image_size, 3):
            raise DataError(
                f"{where}: image is {image.dtype}{list(image.shape)}, not uint8 "
                f"[{self.image_size}, {self.image_size}, 3]"
            )
        caption = record["captions"][self.caption_index]
        caption = caption.decode() if isinstance(caption, bytes) else str(caption)
        try:
            text = self.tokenizer.encode(caption, self.max_len)
        except ValueError as error:
            raise DataError(f"{where}: {error}") from None
        # The dataset's annotations, e.g. the labels of the linear probe ("probe_labels").
        return {"image": image, "text": text, **self.dataset.annotations(record)}

    def init_params(self, rng, batch):
        """Initial parameters for a batch like `batch`."""
        return self.model.init({"params": rng}, batch["image"], batch["text"])["params"]

    def apply_train(self, params, batch, rng):
        """The training forward pass: (outputs, intermediates) of the model with train=True.

        `rng` is split into the "mask" stream (modality dropout, masking) and "dropout".
        """
        mask_rng, dropout_rng = jax.random.split(rng)
        return self.model.apply(
            {"params": params},
            batch["image"],
            batch["text"],
            train=True,
            rngs={"mask": mask_rng, "dropout": dropout_rng},
        )

    def loss(self, params, batch, rng):
        """`reconstruction_loss` of the training forward pass, with the share of each modality."""
        outputs, info = self.apply_train(params, batch, rng)
        loss, metrics = reconstruction_loss(
            batch["image"],
            outputs["image"],
            batch["text"],
            outputs["logits"],
            self.image_weight,
            self.text_weight,
        )
        metrics["image_only"] = jnp.mean(~info["text_present"])
        metrics["text_only"] = jnp.mean(~info["image_present"])
        return loss, metrics

    def _encode_all(self, params, images, text, prefix: str) -> dict:
        def encode(i, t):
            z, _ = self.model.apply({"params": params}, i, t, method=MultimodalAutoencoder.encode)
            return z

        return {
            f"{prefix}joint": encode(images, text),
            f"{prefix}from_image": encode(images, None),
            f"{prefix}from_text": encode(None, text),
        }

    def predict(self, params, batch, rng=None):
        """Reconstructions, greedy texts and z of every source (module docstring)."""
        del rng
        images, text = batch["image"], batch["text"]
        targets = text[:, 1:]
        out = self._encode_all(params, images, text, "z_")
        decoder = autoencoder_text_decoder(self.model)

        def apply(*args, method):
            return self.model.apply({"params": params}, *args, method=method)

        for source in SOURCES:
            z = out[f"z_{source}"]
            image = self.model.apply(
                {"params": params}, z, mode=True, method=MultimodalAutoencoder.decode_image
            )
            out[f"image_{source}"] = jnp.clip(image, 0.0, 1.0)
            logits = apply(z, text[:, :-1], method=MultimodalAutoencoder.decode_text)
            right = (jnp.argmax(logits, -1) == targets) & (targets != 0)
            out[f"text_correct_{source}"] = right.sum(-1).astype(jnp.int32)
            memory = apply(z, method=MultimodalAutoencoder.memory)
            out[f"text_{source}"], _ = decoding.greedy(
                decoder,
                params["text_decoder"],
                memory,
                None,
                bos_id=BOS,
                eos_id=EOS,
                max_len=targets.shape[1],
            )
        # The probe's baseline: the same architecture, another seed, no training. Initialising
        # here (inside the compiled predict) costs one draw of the parameters per batch.
        random_params = self.model.init(jax.random.key(self.probe_random_seed), images, text)
        out.update(self._encode_all(random_params["params"], images, text, "z_random_"))
        return out

    def report(self, metrics: dict[str, float]) -> str:
        """A table of the headline test metrics, the mean-image baseline and the probes."""
        test = self.dataset.source(self.test_split())
        mean_mse = mean_image_baseline(self.dataset.source("train"), test)

        # Metrics arrive as "<eval name>/<metric>"; the eval names are the config's choice,
        # and the validation split's ("validation", "validation_...") are not what this table
        # reports.
        flat = {
            key.split("/", 1)[-1]: value
            for key, value in metrics.items()
            if not key.startswith("validation")
        }

        def get(key):
            return flat.get(key, float("nan"))

        lines = [f"{'reconstruction (test)':<44}{'value':>10}", "-" * 54]
        for key, label in (
            ("image_joint_psnr", "image PSNR (dB), from image + text"),
            ("image_from_image_psnr", "image PSNR (dB), from the image alone"),
            ("image_joint_mse", "image MSE, from image + text"),
            ("image_from_text_mse", "image MSE, from the text alone"),
            ("text_joint_exact_match", "text exact match, from image + text"),
            ("text_joint_token_accuracy", "text token accuracy, from image + text"),
            ("text_from_text_exact_match", "text exact match, from the text alone"),
            ("text_from_image_exact_match", "text exact match, from the image alone"),
            ("text_from_image_cider_d", "text CIDEr-D, from the image alone"),
        ):
            lines.append(f"{label:<44}{get(key):>10.4f}")
        lines.append(f"{'image MSE of the mean training image':<44}{mean_mse:>10.4f}")
        for source in SOURCES:  # the "drawn_order" evaluator's, where the config has one
            if f"{source}_objects_in_order" in flat:
                label = f"objects drawn in order, {source.replace('_', ' ')}"
                lines.append(f"{label:<44}{get(f'{source}_objects_in_order'):>10.4f}")
        if "z_joint_accuracy" in flat:
            lines += ["", f"{'linear probe on z (accuracy)':<30}{'trained':>10}{'random':>10}"]
            lines.append("-" * 50)
            for source in SOURCES:
                for attribute in ("accuracy",) + PROBE_ATTRIBUTES:
                    trained = get(f"z_{source}_{attribute}")
                    random = get(f"z_random_{source}_{attribute}")
                    lines.append(f"{source + ' ' + attribute:<30}{trained:>10.4f}{random:>10.4f}")
            lines.append(f"{'majority class':<30}{get('majority_accuracy'):>10.4f}")
        return "\n".join(lines)


def mean_image_baseline(train_records, test_records, num_train: int = 1000) -> float:
    """Test MSE of always answering the mean of the first `num_train` training images.

    The best any model that ignores its input can do on pixel MSE: the yardstick for images
    generated from the text alone, which does not say where the objects are.
    """
    count = min(num_train, len(train_records))
    mean = np.mean(
        [np.asarray(train_records[i]["image"], np.float32) / 255.0 for i in range(count)], 0
    )
    errors = [
        np.mean(np.square(np.asarray(test_records[i]["image"], np.float32) / 255.0 - mean))
        for i in range(len(test_records))
    ]
    return float(np.mean(errors))
