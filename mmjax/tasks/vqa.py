"""Visual question answering: a VQA model, cross-entropy over answers, argmax predictions.

One example is one image with all its questions: image uint8 [H, W, 3], question int32
[Q, L] (token ids, 0 = padding), answer int32 [Q], subtype int32 [Q], and question_code
float32 [Q, 11] where the records hold the 11-number codes (Sort-of-CLEVR does). The model
encodes each image once for its Q questions.

`config.model.name` picks the model: "transformer" (the default, `VQATransformer`, reads the
question tokens) or one of `relation.CODE_MODELS` ("relation_network", "cnn_mlp",
"question_only", which read the question codes); the other model entries are its arguments.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mmjax.config_utils import ConfigError
from mmjax.data import sort_of_clevr, sources
from mmjax.data.errors import DataError
from mmjax.data.tokenizer import sort_of_clevr_question_tokenizer
from mmjax.models import relation
from mmjax.models.vqa import VQATransformer


class VQATask:
    """Glues the VQA model `config.model` names to its loss and predictions."""

    def __init__(self, config):
        self.tokenizer = sort_of_clevr_question_tokenizer()
        self.data_config = config.data
        self.max_len = config.data.max_question_len
        self._encoded: dict[bytes, np.ndarray] = {}
        model = config.model.to_dict()
        try:
            # "bfloat16": bf16 activations and matmuls; parameters and optimizer state stay f32.
            model["dtype"] = jnp.dtype(model.get("dtype", "float32"))
            self.model_name = model.pop("name", "transformer")
            # The batch entry the model reads as its questions.
            self.question_key = "question" if self.model_name == "transformer" else "question_code"
            if self.model_name == "transformer":
                self.model = VQATransformer(
                    num_answers=len(sort_of_clevr.ANSWERS),
                    vocab_size=self.tokenizer.vocab_size,
                    max_question_len=self.max_len,
                    **model,
                )
            elif self.model_name in relation.CODE_MODELS:
                model_class = relation.CODE_MODELS[self.model_name]
                self.model = model_class(num_answers=len(sort_of_clevr.ANSWERS), **model)
            else:
                known = ["transformer", *relation.CODE_MODELS]
                raise ConfigError(f"config.model.name={self.model_name!r} is not one of {known}")
        except TypeError as error:
            raise ConfigError(f"config.model: {error}") from None

    def _encode(self, text: bytes) -> np.ndarray:
        # Questions come from a few templates, so each distinct text is tokenized once.
        if text not in self._encoded:
            decoded = text.decode() if isinstance(text, bytes) else text
            self._encoded[text] = self.tokenizer.encode(decoded, self.max_len)
        return self._encoded[text]

    def preprocess(self, record: dict) -> dict[str, np.ndarray]:
        """A decoded Sort-of-CLEVR record -> one training example (see module docstring).

        Raises DataError naming the record for an image that is not [H, W, 3] uint8, an empty
        or over-long question, or an answer outside the answer vocabulary.
        """
        questions = record["questions"]
        where = f"record {record.get('id', '?')}"
        image = np.asarray(record["image"])
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
            raise DataError(f"{where}: image is {image.dtype}{list(image.shape)}, not uint8 HxWx3")
        try:
            question = np.stack([self._encode(t) for t in questions["text"]])
        except ValueError as error:
            raise DataError(f"{where}: {error}") from None
        answer = np.asarray(questions["answer"], np.int32)
        outside = (answer < 0) | (answer >= len(sort_of_clevr.ANSWERS))
        if outside.any():
            i = int(np.argmax(outside))
            raise DataError(
                f"{where}: answer {answer[i]} of question {i} is outside the "
                f"{len(sort_of_clevr.ANSWERS)} answers {list(sort_of_clevr.ANSWERS)}"
            )
        example = {
            "image": image,
            "question": question,
            "answer": answer,
            "subtype": np.asarray(questions["subtype"], np.int32),
        }
        if "code" in questions:
            example["question_code"] = np.asarray(questions["code"], np.float32)
        elif self.question_key == "question_code":
            raise DataError(
                f"{where}: model {self.model_name!r} reads the questions' 11-number codes, "
                "which this dataset's records do not hold (questions/code)"
            )
        return example

    def init_params(self, rng, batch):
        """Initial parameters for a batch like `batch`."""
        return self.model.init({"params": rng}, batch["image"], batch[self.question_key])["params"]

    def loss(self, params, batch, rng):
        """Mean answer cross-entropy over all B*Q questions, and the training accuracy."""
        logits, _ = self.model.apply(
            {"params": params},
            batch["image"],
            batch[self.question_key],
            train=True,
            rngs={"dropout": rng},
        )
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch["answer"])
        accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["answer"])
        return losses.mean(), {"accuracy": accuracy}

    def predict(self, params, batch):
        """Predicted answer int32 [B, Q] (argmax) and its probability float32 [B, Q]."""
        logits, _ = self.model.apply({"params": params}, batch["image"], batch[self.question_key])
        probabilities = jax.nn.softmax(logits.astype(jnp.float32), -1)
        return {
            "answer": jnp.argmax(logits, -1).astype(jnp.int32),
            "probability": probabilities.max(-1),
        }

    def report(self, metrics: dict[str, float]) -> str:
        """A table of test accuracy per subtype next to the question-only baseline."""
        baseline = question_only_baseline(
            sources.get_source(self.data_config, "train"),
            sources.get_source(self.data_config, "test"),
        )
        rows = list(sort_of_clevr.SUBTYPES) + ["non_relational", "relational"]
        lines = [
            f"{'question type':<16}{'test accuracy':>15}{'question-only':>15}",
            "-" * 46,
        ]
        for row in rows:
            value = metrics.get(f"test/accuracy/{row}", float("nan"))
            lines.append(f"{row:<16}{100 * value:>14.1f}%{100 * baseline[row]:>14.1f}%")
        lines.append(f"{'overall':<16}{100 * metrics.get('test/accuracy', float('nan')):>14.1f}%")
        return "\n".join(lines)


def question_only_baseline(train_records, test_records) -> dict[str, float]:
    """Accuracy on test of answering each (color, subtype) with its most frequent train answer.

    This is the best any model that ignores the image can do, up to sampling noise.
    """
    counts = np.zeros((6, len(sort_of_clevr.SUBTYPES), len(sort_of_clevr.ANSWERS)), np.int64)
    for record in train_records:
        q = record["questions"]
        np.add.at(counts, (q["color"], q["subtype"], q["answer"]), 1)
    majority = counts.argmax(-1)
    hits = {name: [] for name in sort_of_clevr.SUBTYPES}
    for record in test_records:
        q = record["questions"]
        correct = majority[q["color"], q["subtype"]] == q["answer"]
        for subtype, ok in zip(q["subtype"], correct, strict=True):
            hits[sort_of_clevr.SUBTYPES[subtype]].append(ok)
    result = {name: float(np.mean(v)) if v else float("nan") for name, v in hits.items()}
    result["non_relational"] = float(np.mean(sum((hits[n] for n in ("shape", "left", "top")), [])))
    result["relational"] = float(
        np.mean(sum((hits[n] for n in ("closest", "furthest", "count")), []))
    )
    return result
