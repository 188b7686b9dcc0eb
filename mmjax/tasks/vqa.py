"""Visual question answering: a VQA model, cross-entropy over answers, argmax predictions.

One example is one image with all its questions: image uint8 [H, W, 3], question int32
[Q, L] (token ids, 0 = padding), answer int32 [Q], and on Sort-of-CLEVR subtype int32 [Q] and
question_code float32 [Q, 11] (the 11-number codes). The model encodes each image once for its
Q questions.

`config.model.name` picks the model: "transformer" (the default, `VQATransformer`, reads the
question tokens) or one of `relation.CODE_MODELS` ("relation_network", "cnn_mlp",
"question_only", which read the Sort-of-CLEVR question codes); the other model entries are its
arguments.

Sort-of-CLEVR has 20 questions per image from fixed templates and 10 answers: its question
tokenizer is built from the templates and its answers are already ids. Any other dataset
(clevr, custom) has free-text questions and answers and any number of questions per image:
the question tokenizer (config.tokenizer) and the answer vocabulary
(`mmjax.data.answers.AnswerVocabulary`, at most data.max_answers classes) are built from the
training split on the first run (or taken from a custom dataset, which was prepared with them)
and saved in the workdir; each image's first data.questions_per_image = Q questions are kept
and the rest of the Q rows are padding. Answer ids: 0..N-1 the vocabulary, N an answer outside
it (always wrong, left out of the loss), -1 a padding row (left out of loss and metrics).
"""

from __future__ import annotations

import collections
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mmjax.config_utils import ConfigError
from mmjax.data import sources
from mmjax.data.answers import AnswerVocabulary
from mmjax.data.errors import DataError
from mmjax.data.tokenizer import BOS, EOS, sort_of_clevr_question_tokenizer
from mmjax.models.vqa import VQATransformer
from mmjax.projects.sort_of_clevr import relation
from mmjax.projects.sort_of_clevr import scenes as sort_of_clevr

ANSWERS_FILE = "answers.json"


def _as_str(text) -> str:
    return text.decode() if isinstance(text, bytes) else str(text)


def load_or_build_answers(config, workdir: str | None) -> AnswerVocabulary:
    """The answer vocabulary: the workdir's, a custom dataset's, or built from training answers.

    Built ones keep at most data.max_answers (0: all) answers and are saved in the workdir.
    """
    path = os.path.join(workdir, ANSWERS_FILE) if workdir else None
    if path and os.path.exists(path):
        return AnswerVocabulary.load(path)
    provided = sources.dataset_file(config.data, ANSWERS_FILE)
    if provided:  # most frequent first, so the first max_answers are the ones to keep
        answers = AnswerVocabulary.load(provided).answers
        vocabulary = AnswerVocabulary(answers[: config.data.max_answers or None])
    else:
        train = sources.get_source(config.data, "train", images=False)
        answers = (_as_str(a) for record in train for a in record["questions"]["answer"])
        try:
            vocabulary = AnswerVocabulary.build(answers, max_size=config.data.max_answers)
        except ValueError:
            raise DataError(f"{config.data.name} train has no non-empty answers") from None
    if path and jax.process_index() == 0:
        os.makedirs(workdir, exist_ok=True)
        vocabulary.save(path + ".tmp")
        os.replace(path + ".tmp", path)
    return vocabulary


class VQATask:
    """Glues a VQATransformer built from `config.model` to its loss and predictions."""

    def __init__(self, config):
        self.config = config
        self.data_config = config.data
        self.max_len = config.data.max_question_len
        self._encoded: dict[bytes, np.ndarray] = {}
        self._model_kwargs = config.model.to_dict()
        # "bfloat16": bf16 activations and matmuls; parameters and optimizer state stay f32.
        self._model_kwargs["dtype"] = jnp.dtype(self._model_kwargs.get("dtype", "float32"))
        self.model_name = self._model_kwargs.pop("name", "transformer")
        known = ["transformer", *relation.CODE_MODELS]
        if self.model_name not in known:
            raise ConfigError(f"config.model.name={self.model_name!r} is not one of {known}")
        # The batch entry the model reads as its questions.
        self.question_key = "question" if self.model_name == "transformer" else "question_code"
        self.sort_of_clevr = config.data.name == "sort_of_clevr"
        self.answers = None  # an AnswerVocabulary, for datasets with free-text answers
        self.num_answers = None
        if self.sort_of_clevr:
            self.tokenizer = sort_of_clevr_question_tokenizer()
            self.num_answers = len(sort_of_clevr.ANSWERS)
            self.model = self._build_model(self.tokenizer.vocab_size)
        elif self.question_key == "question_code":
            raise ConfigError(
                f"config.model.name={self.model_name!r} reads Sort-of-CLEVR's question codes; "
                f"{config.data.name} has free-text questions: use the transformer"
            )
        else:
            self.questions_per_image = config.data.questions_per_image
            self._build_model(1)  # checks config.model before any data is read
            self.tokenizer = self.model = None

    def _build_model(self, vocab_size: int):
        try:
            if self.model_name != "transformer":
                model_class = relation.CODE_MODELS[self.model_name]
                return model_class(num_answers=self.num_answers, **self._model_kwargs)
            return VQATransformer(
                num_answers=self.num_answers or 1,
                vocab_size=vocab_size,
                max_question_len=self.max_len,
                **self._model_kwargs,
            )
        except TypeError as error:
            raise ConfigError(f"config.model: {error}") from None

    def prepare(self, workdir: str | None) -> None:
        """Loads or builds the question tokenizer and answer vocabulary; builds the model.

        A no-op on Sort-of-CLEVR, whose tokenizer and answers are fixed.
        """
        if self.sort_of_clevr:
            return
        from mmjax.tasks.captioning import load_or_build_tokenizer

        self.answers = load_or_build_answers(self.config, workdir)
        self.num_answers = len(self.answers)
        train = sources.get_source(self.data_config, "train", images=False)
        self.tokenizer = load_or_build_tokenizer(
            self.config,
            workdir,
            texts=lambda: [_as_str(t) for record in train for t in record["questions"]["text"]],
        )
        self.model = self._build_model(self.tokenizer.vocab_size)

    @property
    def evaluator_context(self) -> dict:
        """What evaluators may take from the task: the number of answer classes.

        num_answers + 1 on free-text datasets: the last class is "outside the vocabulary".
        """
        return {"num_classes": self.num_answers + (0 if self.sort_of_clevr else 1)}

    def _encode(self, text: bytes) -> np.ndarray:
        if not self.sort_of_clevr:  # free text rarely repeats: a cache would only grow
            return self.tokenizer.encode(_as_str(text), self.max_len)
        # Questions come from a few templates, so each distinct text is tokenized once.
        if text not in self._encoded:
            self._encoded[text] = self.tokenizer.encode(_as_str(text), self.max_len)
        return self._encoded[text]

    def _check_image(self, record: dict) -> np.ndarray:
        image = np.asarray(record["image"])
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
            raise DataError(
                f"record {record.get('id', '?')}: image is {image.dtype}{list(image.shape)}, "
                "not uint8 HxWx3"
            )
        return image

    def preprocess(self, record: dict) -> dict[str, np.ndarray]:
        """A decoded record -> one example (see module docstring).

        Raises DataError naming the record for an image that is not [H, W, 3] uint8, no
        question, an empty or over-long question, or (Sort-of-CLEVR) an answer outside the 10.
        """
        if not self.sort_of_clevr:
            return self._preprocess_free_text(record)
        questions = record["questions"]
        where = f"record {record.get('id', '?')}"
        image = self._check_image(record)
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

    def _preprocess_free_text(self, record: dict) -> dict[str, np.ndarray]:
        where = f"record {record.get('id', '?')}"
        image = self._check_image(record)
        questions = record.get("questions") or {"text": [], "answer": []}
        texts = list(questions["text"])[: self.questions_per_image]
        if not texts:
            raise DataError(f"{where}: has no questions")
        # Padding rows hold "<bos> <eos>", not all padding: a question with no real token
        # would give its pooled token nothing to attend to.
        question = np.zeros((self.questions_per_image, self.max_len), np.int32)
        question[:, :2] = (BOS, EOS)
        answer = np.full(self.questions_per_image, -1, np.int32)
        try:
            for i, text in enumerate(texts):
                question[i] = self._encode(text)
        except ValueError as error:
            raise DataError(f"{where}: {error}") from None
        for i, text in enumerate(questions["answer"][: len(texts)]):
            answer[i] = self.answers.id(_as_str(text))
        return {"image": image, "question": question, "answer": answer}

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
        """A table of test accuracy per subtype next to the question-only baseline.

        On free-text datasets: test accuracy next to always giving the most frequent answer.
        """
        if not self.sort_of_clevr:
            split = self.config.evals.test.split if "test" in self.config.evals else "test"
            baseline = most_frequent_answer_baseline(
                sources.get_source(self.data_config, "train", images=False),
                sources.get_source(self.data_config, split, images=False),
            )
            model = 100 * metrics.get("test/accuracy", float("nan"))
            return (
                f"{'test accuracy':<16}{'model':>8}{'most frequent answer':>22}\n"
                f"{'overall':<16}{model:>7.1f}%{100 * baseline:>21.1f}%"
            )
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


def most_frequent_answer_baseline(train_records, test_records) -> float:
    """Accuracy on test of always giving the most frequent (normalised) training answer."""
    from mmjax.data.answers import normalize_answer

    counts = collections.Counter(
        normalize_answer(_as_str(a)) for r in train_records for a in r["questions"]["answer"]
    )
    best = min(counts, key=lambda a: (-counts[a], a))
    hits = [
        normalize_answer(_as_str(a)) == best for r in test_records for a in r["questions"]["answer"]
    ]
    return float(np.mean(hits)) if hits else float("nan")
