"""A trained model behind four requests: answer, caption, rank captions, reconstruct.

  predictor = mmjax.predict.load("runs/vqa")
  predictor.answer("scene.png", "what is the shape of the red object?")  # Answer('circle', 0.97)

Each method runs the task's own `predict` (the function the evaluators score), jit-compiled,
on a batch of one image, with text encoded as the input pipeline encodes it.
"""

from __future__ import annotations

import dataclasses
import difflib
import os

import jax
import numpy as np

from mmjax.data.tokenizer import BOS, EOS, UNK, WordTokenizer, split_words
from mmjax.predict.clips import check_clip, clip_frames, read_clip
from mmjax.predict.errors import InputError
from mmjax.predict.images import check_image, read_image
from mmjax.predict.run import LoadedRun, load_run


@dataclasses.dataclass(frozen=True)
class Answer:
    """A VQA answer: its text, its probability under the model, and its class index."""

    text: str
    probability: float
    index: int


@dataclasses.dataclass(frozen=True)
class Caption:
    """A generated caption and its log-probability under the model (per the decoding method)."""

    text: str
    logprob: float


@dataclasses.dataclass(frozen=True)
class Reconstruction:
    """An autoencoder's image uint8 [S, S, 3] and text from one z, and z's source.

    `source` is "from_image" (z of the image alone), "from_text" (of a text alone) or "joint"
    (of the image and a text).
    """

    image: np.ndarray
    text: str
    source: str


@dataclasses.dataclass(frozen=True)
class Ranked:
    """A candidate caption and its cosine similarity to the image in the shared space."""

    text: str
    similarity: float


def encode_text(tokenizer, text: str, max_len: int, what: str = "text") -> np.ndarray:
    """`text` as the input pipeline encodes it (`tokenizer.encode`): int32 [max_len].

    Raises InputError for words (or, with SentencePiece, characters) the tokenizer does not
    know, naming them and, for a small word vocabulary, listing the known words; and for
    empty or over-long text.
    """
    ids = tokenizer.tokens_to_ids(text)
    if UNK in ids:
        if isinstance(tokenizer, WordTokenizer):
            words = split_words(text)
            unknown = sorted({w for w, i in zip(words, ids, strict=True) if i == UNK})
            known = sorted(tokenizer.vocab[4:])
            listing = f"; it knows {known}" if len(known) <= 80 else ""
            raise InputError(f"{what} has words outside the vocabulary: {unknown}{listing}")
        raise InputError(f"{what} {text!r} has characters the tokenizer does not know")
    try:
        return tokenizer.encode(text, max_len)
    except ValueError as error:
        raise InputError(f"{what}: {error}") from None


def closest_question(question: str, known: list[str] | None) -> tuple[bool, str | None]:
    """(whether `question` is one of `known`, the closest of them); (True, None) without any.

    `known` is a dataset's closed set of questions (`Dataset.known_questions`), or None for
    free-text questions. Compared after the tokenizer's word split, so case and spacing do not
    matter.
    """
    if not known:
        return True, None
    words = " ".join(split_words(question))
    by_words = {" ".join(split_words(q)): q for q in known}
    if words in by_words:
        return True, by_words[words]
    close = difflib.get_close_matches(words, list(by_words), n=1, cutoff=0.0)
    return False, by_words[close[0]]


class Predictor:
    """Answers, captions, ranks or reconstructs with the model of a loaded run.

    Images are file paths (PNG or JPEG) or arrays uint8 [S, S, 3] (float in [0, 1] also),
    S = the run's config.data.image_size. A video run (`frames` set) takes clips instead,
    wherever an image is asked for: a folder of frames, a .npy file or a GIF, or an array
    [T, S, S, 3] (`mmjax.predict.clips`).
    """

    def __init__(self, run: LoadedRun):
        self.run = run
        self.task = run.task
        self.params = run.params
        self.image_size = int(run.config.data.image_size)
        self.frames = clip_frames(run.config, run.params)  # None: an image model
        self._predict = jax.jit(self.task.predict)

    @property
    def task_name(self) -> str:
        """The run's task (config.task)."""
        return self.run.config.task

    def image(self, image) -> np.ndarray:
        """`image` (a path or an array) as uint8 [S, S, 3]; InputError when it cannot be.

        For a video run, a clip (path or array) as uint8 [T, S, S, 3].
        """
        if self.frames is not None:
            if isinstance(image, str | os.PathLike):
                return read_clip(image, self.image_size, self.frames)
            return check_clip(image, self.image_size, self.frames)
        if isinstance(image, str | os.PathLike):
            return read_image(image, self.image_size)
        return check_image(image, self.image_size)

    def _require(self, task: str, method: str) -> None:
        if self.task_name != task:
            raise InputError(
                f"{method} needs a run of task {task!r}; the run in {self.run.workdir!r} is "
                f"task {self.task_name!r}"
            )

    def predict(self, record: dict) -> dict[str, np.ndarray]:
        """The task's own predictions for one record, as the evaluators see them.

        `record` is in the dataset's common layout (its "image", or for a video run its
        "video" or "image", a path or an array); it goes through `task.preprocess` as a
        training record would. Returns the task's prediction arrays for that one example (the
        batch axis removed). Works for any task, including one a project registered.
        """
        key = "video" if self.frames is not None else "image"
        media = self.image(record["video"] if "video" in record else record["image"])
        record = {k: v for k, v in record.items() if k not in ("image", "video")}
        example = self.task.preprocess(dict(record, **{key: media}))
        batch = jax.tree.map(lambda x: np.asarray(x)[None], example)
        out = jax.device_get(self._predict(self.params, batch))
        return jax.tree.map(lambda x: np.asarray(x)[0], out)

    def encode_question(self, question: str) -> np.ndarray:
        """A question as the VQA pipeline encodes it: int32 [L] (`encode_text`)."""
        self._require("vqa", "answering a question")
        return encode_text(self.task.tokenizer, question, self.task.max_len, "the question")

    def answer(self, image, question: str) -> Answer:
        """The model's answer to `question` about `image`, with its probability."""
        batch = {
            "image": self.image(image)[None],
            "question": self.encode_question(question)[None, None],
        }
        out = jax.device_get(self._predict(self.params, batch))
        index = int(out["answer"][0, 0])
        # The run's own answer vocabulary: the words it was trained to tell apart.
        text = self.task.answers.answers[index]
        return Answer(text, float(out["probability"][0, 0]), index)

    def attention(self, image, question: str, residual: float = 0.5):
        """The fusion encoder's attention for `question` about `image` (`VQAAttention`).

        Batch and question axes are kept (B = Q = 1); see `mmjax.interpret.attention`.
        """
        from mmjax.interpret.attention import vqa_attention

        question_ids = self.encode_question(question)
        return vqa_attention(
            self.task.model,
            self.params,
            self.image(image)[None],
            question_ids[None, None],
            residual=residual,
        )

    def caption(self, image) -> Caption:
        """A caption of `image`, decoded with the run's config.decoding (greedy, beam, ...)."""
        self._require("captioning", "captioning")
        out = jax.device_get(self._predict(self.params, {"image": self.image(image)[None]}))
        return Caption(self.task.tokenizer.decode(out["tokens"][0]), float(out["logprob"][0]))

    def _encode_captions(self, captions: list[str]) -> np.ndarray:
        """Candidate captions as the pipeline encodes them: int32 [T, L]."""
        if not captions:
            raise InputError("ranking needs at least one caption")
        return np.stack(
            [
                encode_text(self.task.tokenizer, c, self.task.max_len, f"caption {i + 1}")
                for i, c in enumerate(captions)
            ]
        )

    def rank(self, image, captions: list[str]) -> list[Ranked]:
        """`captions` sorted by their similarity to `image`, most similar first."""
        self._require("retrieval", "ranking captions")
        tokens = self._encode_captions(captions)
        batch = {"image": self.image(image)[None], "captions": tokens[None]}
        out = jax.device_get(self._predict(self.params, batch))
        similarity = out["text_embedding"][0] @ out["image_embedding"][0]
        order = np.argsort(-similarity, kind="stable")
        return [Ranked(captions[i], float(similarity[i])) for i in order]

    def relevance(self, image, captions: list[str]):
        """How each image token bears on each caption's similarity (`RetrievalRelevance`).

        Captions keep their given order; batch axis kept (B = 1). See
        `mmjax.interpret.retrieval_relevance`.
        """
        from mmjax.interpret.retrieval_relevance import retrieval_relevance

        self._require("retrieval", "caption relevance")
        tokens = self._encode_captions(captions)
        return retrieval_relevance(
            self.task.model, self.params, self.image(image)[None], tokens[None]
        )

    def caption_attention(self, image):
        """The decoder's cross-attention for each word of the caption of `image`.

        Returns `CaptionAttention` (batch axis kept, B = 1) of the caption that `caption`
        decodes (the run's config.decoding); see `mmjax.interpret.caption_attention`.
        """
        from mmjax.interpret.caption_attention import caption_attention

        self._require("captioning", "caption attention")
        pixels = self.image(image)[None]
        out = jax.device_get(self._predict(self.params, {"image": pixels}))
        return caption_attention(self.task.model, self.params, pixels, out["tokens"])

    def reconstruct(self, image, text: str | None = None) -> Reconstruction:
        """`image` (and `text`, if given) through a multimodal autoencoder and back.

        Without `text`, z comes from the image alone ("from_image"); with it, from both
        ("joint", `text` encoded as the pipeline encodes captions). Returns the decoded image
        (uint8, clipped) and the greedy text decoded from the same z.
        """
        return self.reconstructions(image, text)["joint" if text is not None else "from_image"]

    def reconstructions(self, image, text: str | None = None) -> dict[str, Reconstruction]:
        """The reconstructions from every source of z, by source.

        "from_image" always; with `text` also "from_text" and "joint" (see `reconstruct`).
        """
        self._require("autoencoding", "reconstruction")
        if text is None:
            # predict always reads a text; from_image never looks at it.
            tokens = np.zeros(self.task.max_len, np.int32)
            tokens[:2] = (BOS, EOS)
        else:
            tokens = encode_text(self.task.tokenizer, text, self.task.max_len, "the text")
        batch = {"image": self.image(image)[None], "text": tokens[None]}
        out = jax.device_get(self._predict(self.params, batch))
        sources = ("from_image", "from_text", "joint") if text is not None else ("from_image",)
        result = {}
        for source in sources:
            pixels = np.round(np.asarray(out[f"image_{source}"][0]) * 255).astype(np.uint8)
            decoded = self.task.tokenizer.decode(out[f"text_{source}"][0])
            result[source] = Reconstruction(pixels, decoded, source)
        return result


def load(workdir: str | os.PathLike, step: int | None = None) -> Predictor:
    """A Predictor for the run in `workdir` (its newest readable checkpoint, or `step`)."""
    return Predictor(load_run(workdir, step))
