"""Visual question answering: a VQA model, cross-entropy over answers, argmax predictions.

One example is one image with Q = data.questions_per_image questions: image uint8 [H, W, 3],
question int32 [Q, L] (token ids, 0 = padding), answer int32 [Q], and the dataset's extra
per-question arrays (`Dataset.question_fields`, e.g. a question type [Q] to slice accuracy
by). The model encodes each image once for its Q questions; an image's first Q questions are
kept and missing ones are padding rows. When the dataset supplies them, an example also holds
"answers" int32 [Q, A] (several human answers per question, VQAv2-style; A =
data.answers_per_question, default 10), "original_answer" int32 [Q] (a counterfactual probe's
answers before the change) and "group/<attr>" uint8 [Q, 48] (grouping attributes, for the
disparity evaluator).

Training targets: the answer id (cross-entropy), or, with several human answers
(data.soft_targets; by default when `Dataset.answers_per_question` > 1), their VQA soft scores
(`soft_target_loss`). Sort-of-CLEVR has one answer per question: hard targets.

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
from mmjax.evaluators.bootstrap import CI_HIGH, CI_LOW
from mmjax.evaluators.groups import group_examples
from mmjax.models.build import build_model
from mmjax.tasks.base import Task, checked_image
from mmjax.tasks.clip_windows import mean_window_logits, window_settings
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
        soft = self.config.data.get("soft_targets", None)
        self.soft_targets = self.dataset.answers_per_question() > 1 if soft is None else soft
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
        example.update(self._answer_extras(questions, count))
        example.update(self._groups(record, count, where))
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

    def _answer_extras(self, questions: dict, count: int) -> dict[str, np.ndarray]:
        """The humans' answers and a probe's answers before the change, when there are some.

        "answers" int32 [Q, A] (-1 pads) and "original_answer" int32 [Q], as vocabulary ids.
        """
        extras = {}
        if "answers" in questions:
            width = self.config.data.get("answers_per_question", 10)
            ids = np.full((self.questions_per_image, width), -1, np.int32)
            for i, humans in enumerate(list(questions["answers"])[:count]):
                row = [self.answers.id(as_text(a)) for a in list(humans)[:width]]
                ids[i, : len(row)] = row
            extras["answers"] = ids
        if "original_answer" in questions:
            ids = np.full(self.questions_per_image, -1, np.int32)
            for i, text in enumerate(list(questions["original_answer"])[:count]):
                ids[i] = self.answers.id(as_text(text))
            extras["original_answer"] = ids
        return extras

    def _groups(self, record: dict, count: int, where: str) -> dict[str, np.ndarray]:
        """Each question's value of each grouping attribute of the dataset, encoded.

        "group/<attr>" uint8 [Q, GROUP_BYTES]; an image's attributes repeat for its questions.
        """
        values = {k: list(v)[:count] for k, v in self.dataset.question_attributes(record).items()}
        for name, value in self.dataset.image_attributes(record).items():
            values.setdefault(name, [value] * count)
        return group_examples(values, self.questions_per_image, where)

    def init_params(self, rng, batch):
        """Initial parameters for a batch like `batch`."""
        return self.model.init({"params": rng}, batch["image"], batch[self.question_key])["params"]

    def loss(self, params, batch, rng):
        """Mean answer cross-entropy over all B*Q questions, and the training accuracy.

        With soft targets (`_soft_targets`): `soft_target_loss` of the humans' answers.
        """
        logits, _ = self.model.apply(
            {"params": params},
            batch["image"],
            batch[self.question_key],
            train=True,
            rngs={"dropout": rng},
        )
        if self._soft_targets(batch):
            return soft_target_loss(logits, batch["answers"])
        answer = batch["answer"]
        # Padding rows (-1) and answers outside the vocabulary (num_answers) are not trained on.
        valid = (answer >= 0) & (answer < logits.shape[-1])
        labels = jnp.where(valid, answer, 0)
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
        count = jnp.maximum(valid.sum(), 1)
        accuracy = jnp.sum((jnp.argmax(logits, -1) == answer) & valid) / count
        return jnp.sum(losses * valid) / count, {"accuracy": accuracy}

    def _soft_targets(self, batch) -> bool:
        """Whether to train on the humans' answers' soft scores.

        data.soft_targets; by default, when the dataset has several answers per question.
        """
        if self.soft_targets and "answers" not in batch:
            raise DataError("data.soft_targets is set but the examples carry no 'answers'")
        return bool(self.soft_targets)

    def predict(self, params, batch):
        """Predicted answer int32 [B, Q] (argmax) and its probability float32 [B, Q].

        A clip longer than config.eval_window's frames is scored as the mean of its windows'
        logits (multi-clip evaluation, `mmjax.tasks.clip_windows`).
        """
        questions = batch[self.question_key]

        def logits_fn(media):
            return self.model.apply({"params": params}, media, questions)[0]

        window, stride = window_settings(self.config)
        logits = mean_window_logits(logits_fn, batch["image"], window, stride)
        probabilities = jax.nn.softmax(logits.astype(jnp.float32), -1)
        return {
            "answer": jnp.argmax(logits, -1).astype(jnp.int32),
            "probability": probabilities.max(-1),
        }

    def report(self, metrics: dict[str, float]) -> str:
        """Test accuracy per slice and overall, next to the dataset's image-blind baseline.

        With the interval of each, when the evaluator computed them (bootstrap_samples > 0).
        """
        name, baseline = self.dataset.answer_baseline(self.test_split())
        rows = [
            k.split("/", 2)[2]
            for k in metrics
            if k.startswith("test/accuracy/") and not k.endswith((CI_LOW, CI_HIGH))
        ]
        width = max(len(name), 12) + 2
        intervals = "test/accuracy" + CI_LOW in metrics
        header = f"{'test accuracy':<16}{'model':>8}" + (f"{'interval':>18}" if intervals else "")
        lines = [header + f"{name:>{width}}"]
        for row in [*rows, "overall"]:
            key = "test/accuracy" if row == "overall" else f"test/accuracy/{row}"
            line = f"{row:<16}{100 * metrics.get(key, float('nan')):>7.1f}%"
            if intervals:
                low, high = (
                    100 * metrics.get(key + end, float("nan")) for end in (CI_LOW, CI_HIGH)
                )
                line += f"{f'[{low:.1f}, {high:.1f}]':>18}"
            lines.append(line + f"{100 * baseline.get(row, float('nan')):>{width - 1}.1f}%")
        return "\n".join(lines)


def soft_target_loss(logits, answers):
    """Sigmoid cross-entropy against VQA soft scores, as VQAv2 models train (Teney et al. 2018).

    logits float [B, Q, N]; answers int [B, Q, A] the humans' answer ids (-1 pads, N: outside
    the vocabulary). The target of answer a is the VQA accuracy a would score
    (`mmjax.evaluators.vqa_accuracy.soft_scores`); the loss sums the N binary cross-entropies
    of a question and averages over questions with a human answer. Returns (loss, {"accuracy":
    the mean VQA accuracy of the argmax}).
    """
    from mmjax.evaluators.vqa_accuracy import soft_scores

    num = logits.shape[-1]
    counts = jax.nn.one_hot(answers, num, dtype=jnp.float32).sum(-2)  # -1 and N: all zeros
    humans = (answers >= 0).sum(-1)
    targets = soft_scores(counts, humans[..., None], xp=jnp)
    valid = humans > 0
    losses = optax.sigmoid_binary_cross_entropy(logits.astype(jnp.float32), targets).sum(-1)
    count = jnp.maximum(valid.sum(), 1)
    chosen = jnp.take_along_axis(targets, jnp.argmax(logits, -1)[..., None], -1)[..., 0]
    return jnp.sum(losses * valid) / count, {"accuracy": jnp.sum(chosen * valid) / count}
