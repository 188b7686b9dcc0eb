"""Visual question answering: a VQA model, cross-entropy over answers, argmax predictions.

One example is one image with Q = data.questions_per_image questions: image uint8 [H, W, 3],
question int32 [Q, L] (token ids, 0 = padding), answer int32 [Q], and the dataset's extra
per-question arrays (`Dataset.question_fields`, e.g. a question type [Q] to slice accuracy
by). The model encodes each image once for its Q questions; an image's first Q questions are
kept and missing ones are padding rows.

The question tokenizer (config.tokenizer) and the answer vocabulary (at most data.max_answers
answers) come from the workdir when resuming, else from the dataset when it fixes them, else
they are built from the training split; both are saved in the workdir. Answer ids: 0..N-1 the
vocabulary, N an answer outside it (always wrong, left out of the loss), -1 a padding row (left
out of loss and metrics).

`config.model.name` picks a registered model (default "vqa_transformer"); a model class whose
`question_input` is not "question" reads that example key instead of the token ids.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mmjax.data.datasets import as_text
from mmjax.data.errors import DataError
from mmjax.data.tokenizer import BOS, EOS
from mmjax.data.vocabularies import load_or_build_answers, load_or_build_tokenizer
from mmjax.models.build import build_model
from mmjax.tasks.base import Task, checked_image
from mmjax.workdir import ANSWERS_FILE, TOKENIZER_FILES


class VQATask(Task):
    """Glues a VQA model built from `config.model` to its loss and predictions."""

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.max_len = config.data.max_question_len
        self.questions_per_image = config.data.questions_per_image
        # Checks config.model's names and arguments before any data is read.
        probe = self._build_model(vocab_size=1, num_answers=1)
        self.question_key = getattr(type(probe), "question_input", "question")
        self.tokenizer = self.answers = None
        # Questions often repeat (templates, "what color is it?"): each distinct text is
        # tokenized once, in a bounded cache.
        self._encode = functools.lru_cache(maxsize=1 << 16)(self._encode_uncached)

    def _build_model(self, vocab_size: int, num_answers: int):
        return build_model(
            self.config.model,
            "vqa_transformer",
            vocab_size=vocab_size,
            num_answers=num_answers,
            max_question_len=self.max_len,
        )

    def prepare(self, saved) -> None:
        """Loads or builds the question tokenizer and the answer vocabulary; builds the model."""
        self.answers = load_or_build_answers(self.config, self.dataset, saved)
        self.tokenizer = load_or_build_tokenizer(self.config, self.dataset, saved, "questions")
        self.model = self._build_model(self.tokenizer.vocab_size, len(self.answers))

    def vocabularies(self) -> dict:
        """The tokenizer and the answer vocabulary, by workdir file name."""
        kind = self.config.tokenizer.kind
        return {TOKENIZER_FILES[kind]: self.tokenizer, ANSWERS_FILE: self.answers}

    @property
    def evaluator_context(self) -> dict:
        """num_classes: the answer vocabulary and the last class, "outside the vocabulary"."""
        return {"num_classes": len(self.answers) + 1}

    def _encode_uncached(self, text: str) -> np.ndarray:
        return self.tokenizer.encode(text, self.max_len)

    def preprocess(self, record: dict) -> dict[str, np.ndarray]:
        """A record with "image" and "questions" -> one example (see the module docstring).

        Raises DataError naming the record for an image that is not [H, W, 3] uint8, no
        question, or an empty or over-long question.
        """
        where = f"record {record.get('id', '?')}"
        image = checked_image(record)
        questions = record.get("questions") or {"text": [], "answer": []}
        texts = list(questions["text"])[: self.questions_per_image]
        if not texts:
            raise DataError(f"{where}: has no questions")
        count, rows = len(texts), self.questions_per_image
        # Padding rows hold "<bos> <eos>", not all padding: a question with no real token
        # would give its pooled token nothing to attend to.
        question = np.zeros((rows, self.max_len), np.int32)
        question[:, :2] = (BOS, EOS)
        answer = np.full(rows, -1, np.int32)
        try:
            for i, text in enumerate(texts):
                question[i] = self._encode(as_text(text))
        except ValueError as error:
            raise DataError(f"{where}: {error}") from None
        for i, text in enumerate(questions["answer"][:count]):
            answer[i] = self.answers.id(as_text(text))
        example = {"image": image, "question": question, "answer": answer}
        for key, (field, dtype) in self.dataset.question_fields.items():
            if field not in questions:
                if key == self.question_key:
                    raise DataError(f"{where}: the model reads questions/{field}, which it lacks")
                continue
            values = np.asarray(questions[field], dtype)[:count]
            padded = np.full((rows, *values.shape[1:]), -1 if values.dtype.kind == "i" else 0)
            padded[:count] = values
            example[key] = padded.astype(dtype)
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
        answer = batch["answer"]
        # Padding rows (-1) and answers outside the vocabulary (num_answers) are not trained on.
        valid = (answer >= 0) & (answer < logits.shape[-1])
        labels = jnp.where(valid, answer, 0)
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
        count = jnp.maximum(valid.sum(), 1)
        accuracy = jnp.sum((jnp.argmax(logits, -1) == answer) & valid) / count
        return jnp.sum(losses * valid) / count, {"accuracy": accuracy}

    def predict(self, params, batch):
        """Predicted answer int32 [B, Q] (argmax) and its probability float32 [B, Q]."""
        logits, _ = self.model.apply({"params": params}, batch["image"], batch[self.question_key])
        probabilities = jax.nn.softmax(logits.astype(jnp.float32), -1)
        return {
            "answer": jnp.argmax(logits, -1).astype(jnp.int32),
            "probability": probabilities.max(-1),
        }

    def report(self, metrics: dict[str, float]) -> str:
        """Test accuracy per slice and overall, next to the dataset's image-blind baseline."""
        name, baseline = self.dataset.answer_baseline(self.test_split())
        rows = [k.split("/", 2)[2] for k in metrics if k.startswith("test/accuracy/")]
        lines = [f"{'test accuracy':<16}{'model':>8}{name:>{max(len(name), 12) + 2}}"]
        for row in [*rows, "overall"]:
            key = "test/accuracy" if row == "overall" else f"test/accuracy/{row}"
            model = 100 * metrics.get(key, float("nan"))
            base = 100 * baseline.get(row, float("nan"))
            lines.append(f"{row:<16}{model:>7.1f}%{base:>{max(len(name), 12) + 1}.1f}%")
        return "\n".join(lines)
