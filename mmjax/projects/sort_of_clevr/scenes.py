"""Sort-of-CLEVR scene generator (Santoro et al. 2017), in pure NumPy.

A scene is a white S x S RGB image (S = 75 by default) holding six objects, one of each color
in `COLORS`, each a filled 11x11 square or a filled radius-5 disk. Every scene carries 20
questions (10 non-relational, then 10 relational) in three forms (structured fields, an
11-number code and an English sentence), their answers, and 5 reference captions.

Everything is a deterministic function of a `np.random.Generator`; `scene_rng` derives that
generator from (seed, split, index) so any scene of any split can be regenerated on its own.
There are three splits, each its own seed stream: "train" (9800 scenes by default), "validation"
(200 by default) and "test" (200 by default). Design choices and evaluations during training
use the validation split; the test split is scored once, at the end. Adding the validation
split left every train and test scene bit-for-bit as it was for the same seed.
This module imports no TFDS; `tfds_builder` stores its output as a TFDS dataset.
"""

from collections.abc import Iterator

import numpy as np

COLORS: list[tuple[str, tuple[int, int, int]]] = [
    ("red", (255, 0, 0)),
    ("green", (0, 255, 0)),
    ("blue", (0, 0, 255)),
    ("orange", (255, 156, 0)),
    ("gray", (128, 128, 128)),
    ("yellow", (255, 255, 0)),
]
COLOR_NAMES: tuple[str, ...] = tuple(name for name, _ in COLORS)
SHAPES: tuple[str, ...] = ("square", "circle")
ANSWERS: tuple[str, ...] = ("yes", "no", "square", "circle", "1", "2", "3", "4", "5", "6")
SUBTYPES: tuple[str, ...] = ("shape", "left", "top", "closest", "furthest", "count")
# A split's position here seeds its scenes (see `scene_rng`): append new splits, never reorder.
SPLITS: tuple[str, ...] = ("train", "test", "validation")

NUM_OBJECTS = 6
NUM_QUESTIONS = 20
NUM_NON_RELATIONAL = 10
NUM_CAPTIONS = 5
QUESTION_CODE_DIM = 11
HALF_SIZE = 5  # squares span center +-5; disks have radius 5
MIN_CENTER_DISTANCE = 10

QUESTION_TEMPLATES: tuple[str, ...] = (
    "what is the shape of the {} object?",
    "is the {} object on the left?",
    "is the {} object on the top?",
    "what is the shape of the object closest to the {} object?",
    "what is the shape of the object furthest from the {} object?",
    "how many objects have the same shape as the {} object?",
)

_YES, _NO = ANSWERS.index("yes"), ANSWERS.index("no")
_SHAPE_ANSWER = ANSWERS.index("square")  # + shape id
_COUNT_ANSWER = ANSWERS.index("1")  # + count - 1
_COLOR_TABLE = np.array([rgb for _, rgb in COLORS], np.uint8)
_OFFSETS = np.arange(-HALF_SIZE, HALF_SIZE + 1)
# Stencils over the 11x11 box around a center, indexed by shape id.
_STENCILS = np.stack(
    [
        np.ones((11, 11), bool),
        _OFFSETS[:, None] ** 2 + _OFFSETS[None, :] ** 2 <= HALF_SIZE**2,
    ]
)
_NUMBER_WORDS = ("no", "one", "two", "three", "four", "five", "six")


def question_text(color: int, subtype: int) -> str:
    """Returns the English question for a color index (0..5) and a global subtype (0..5)."""
    return QUESTION_TEMPLATES[subtype].format(COLOR_NAMES[color])


def question_codes(color: np.ndarray, subtype: np.ndarray) -> np.ndarray:
    """Returns uint8[N, 11] codes: 6 color one-hot, 2 type bits, 3 subtype-in-type bits.

    `color` and `subtype` (global ids 0..5) are int[N]; the type bits are
    [non-relational, relational] and the subtype bits one-hot the subtype within its type.
    """
    color, subtype = np.asarray(color), np.asarray(subtype)
    relational, local = np.divmod(subtype, 3)
    rows = np.arange(len(color))
    code = np.zeros((len(color), QUESTION_CODE_DIM), np.uint8)
    code[rows, color] = 1
    code[rows, NUM_OBJECTS + relational] = 1
    code[rows, NUM_OBJECTS + 2 + local] = 1
    return code


def sample_centers(rng: np.random.Generator, image_size: int = 75) -> np.ndarray:
    """Samples int32[6, 2] (x, y) centers, uniform in [5, S-6], all pairs >= 10 px apart.

    The whole set is redrawn on any violation (rather than one object at a time), so the result
    is uniform over valid layouts; at S = 75 about one draw in three is accepted.
    """
    low, high = HALF_SIZE, image_size - HALF_SIZE - 1
    while True:
        centers = rng.integers(low, high + 1, size=(NUM_OBJECTS, 2), dtype=np.int32)
        diff = centers[:, None, :] - centers[None, :, :]
        dist2 = (diff**2).sum(-1) + np.eye(NUM_OBJECTS, dtype=np.int32) * MIN_CENTER_DISTANCE**2
        if dist2.min() >= MIN_CENTER_DISTANCE**2:
            return centers


def draw(objects: dict, image_size: int = 75) -> np.ndarray:
    """Renders objects {"color" [6], "shape" [6], "center" [6, 2]} to a uint8[S, S, 3] image.

    Objects are painted in array order, so where two shapes touch (squares 10 px apart share a
    row or column of pixels) the later one wins.
    """
    image = np.full((image_size, image_size, 3), 255, np.uint8)
    for color, shape, (x, y) in zip(objects["color"], objects["shape"], objects["center"]):
        box = image[y - HALF_SIZE : y + HALF_SIZE + 1, x - HALF_SIZE : x + HALF_SIZE + 1]
        box[_STENCILS[shape]] = _COLOR_TABLE[color]
    return image


def answer_table(objects: dict, image_size: int = 75) -> np.ndarray:
    """Returns int32[6 subtypes, 6 objects]: the answer index of each subtype about each object.

    Left means x < S/2 and top y < S/2. Closest/furthest use Euclidean distance among the
    other five objects; ties, possible on the integer grid, go to the lower object index.
    """
    shapes = np.asarray(objects["shape"])
    centers = np.asarray(objects["center"], np.int64)
    dist2 = ((centers[:, None, :] - centers[None, :, :]) ** 2).sum(-1)
    # Exclude each object from its own closest/furthest search.
    self_mask = np.eye(NUM_OBJECTS, dtype=bool)
    closest = np.argmin(np.where(self_mask, np.iinfo(np.int64).max, dist2), axis=1)
    furthest = np.argmax(np.where(self_mask, -1, dist2), axis=1)
    counts = (shapes[:, None] == shapes[None, :]).sum(1)
    table = np.stack(
        [
            _SHAPE_ANSWER + shapes,
            np.where(centers[:, 0] < image_size / 2, _YES, _NO),
            np.where(centers[:, 1] < image_size / 2, _YES, _NO),
            _SHAPE_ANSWER + shapes[closest],
            _SHAPE_ANSWER + shapes[furthest],
            _COUNT_ANSWER + counts - 1,
        ]
    )
    return table.astype(np.int32)


def answer_questions(objects: dict, questions: dict, image_size: int = 75) -> np.ndarray:
    """Computes int32[Q] answer indices into `ANSWERS` (Q = 20 for a scene).

    `objects` holds "color" int[6], "shape" int[6], "center" int[6, 2] (x, y); `questions`
    needs "color" int[Q] and "subtype" int[Q] (global ids). See `answer_table` for the rules.
    """
    object_of_color = np.argsort(np.asarray(objects["color"]))
    table = answer_table(objects, image_size)
    return table[np.asarray(questions["subtype"]), object_of_color[np.asarray(questions["color"])]]


def position_phrase(x: int, y: int, image_size: int = 75) -> str:
    """Names the cell of a 3x3 grid holding (x, y): "top left", "center", "bottom center"..."""
    row = ("top", "middle", "bottom")[min(3 * y // image_size, 2)]
    col = ("left", "center", "right")[min(3 * x // image_size, 2)]
    return "center" if (row, col) == ("middle", "center") else f"{row} {col}"


# The nine cells of the 3x3 grid as `position_phrase` names them, row-major.
CELLS = tuple(
    "center" if (row, col) == ("middle", "center") else f"{row} {col}"
    for row in ("top", "middle", "bottom")
    for col in ("left", "center", "right")
)


def cell_index(x: int, y: int, image_size: int = 75) -> int:
    """The index into CELLS of the cell holding (x, y): the cell `position_phrase` names."""
    return 3 * min(3 * y // image_size, 2) + min(3 * x // image_size, 2)


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _join(phrases: list[str]) -> str:
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


# Names of the 5 captions' wordings, in `make_captions`' order (for scores per wording): "a red
# square in the top left, ...", "there is a red square at the ...", "the image shows six
# objects: a top left red square, ...", "from left to right: red square, ...", "two squares and
# four circles: the red square is in the ...".
CAPTION_NAMES = ("listing", "there_is", "image_shows", "left_to_right", "counts")


def make_captions(rng: np.random.Generator, objects: dict, image_size: int = 75) -> list[str]:
    """Returns 5 captions listing every object's color, shape and 3x3-grid position.

    Each caption uses its own wording and a fresh random object order, except the fourth, which
    reads the objects left to right.
    """
    described = [
        (COLOR_NAMES[c], SHAPES[s], position_phrase(x, y, image_size))
        for c, s, (x, y) in zip(objects["color"], objects["shape"], objects["center"])
    ]

    def shuffled() -> list[tuple[str, str, str]]:
        return [described[i] for i in rng.permutation(NUM_OBJECTS)]

    n_circles = int(np.sum(objects["shape"]))
    counts = []
    for n, shape in ((NUM_OBJECTS - n_circles, "square"), (n_circles, "circle")):
        counts.append(f"{_NUMBER_WORDS[n]} {shape}{'' if n == 1 else 's'}")
    left_to_right = [described[i] for i in np.argsort(objects["center"][:, 0], kind="stable")]
    return [
        _join([f"{_article(c)} {c} {s} in the {p}" for c, s, p in shuffled()]) + ".",
        "there is " + _join([f"{_article(c)} {c} {s} at the {p}" for c, s, p in shuffled()]) + ".",
        "the image shows six objects: " + _join([f"a {p} {c} {s}" for c, s, p in shuffled()]) + ".",
        "from left to right: " + ", ".join(f"{c} {s}" for c, s, _ in left_to_right) + ".",
        f"{counts[0]} and {counts[1]}: "
        + ", ".join(f"the {c} {s} is in the {p}" for c, s, p in shuffled())
        + ".",
    ]


def generate_scene(rng: np.random.Generator, image_size: int = 75) -> dict:
    """Generates one scene from `rng`.

    Returns a dict of NumPy arrays:
      "image": uint8[S, S, 3];
      "objects": {"color": int32[6] (= 0..5), "shape": int32[6] (0 square, 1 circle),
                  "center": int32[6, 2] as (x = column, y = row)};
      "questions": {"color": int32[20], "relational": int32[20] (0/1),
                    "subtype": int32[20] (global id into `SUBTYPES`), "code": uint8[20, 11],
                    "text": list of 20 str, "answer": int32[20] (index into `ANSWERS`)};
      "captions": list of 5 str.
    """
    centers = sample_centers(rng, image_size)
    objects = {
        "color": np.arange(NUM_OBJECTS, dtype=np.int32),
        "shape": rng.integers(0, 2, size=NUM_OBJECTS, dtype=np.int32),
        "center": centers,
    }
    q_color = rng.integers(0, NUM_OBJECTS, size=NUM_QUESTIONS, dtype=np.int32)
    relational = (np.arange(NUM_QUESTIONS) >= NUM_NON_RELATIONAL).astype(np.int32)
    subtype = 3 * relational + rng.integers(0, 3, size=NUM_QUESTIONS, dtype=np.int32)
    questions = {
        "color": q_color,
        "relational": relational,
        "subtype": subtype,
        "code": question_codes(q_color, subtype),
        "text": [question_text(c, s) for c, s in zip(q_color, subtype)],
    }
    questions["answer"] = answer_questions(objects, questions, image_size)
    return {
        "image": draw(objects, image_size),
        "objects": objects,
        "questions": questions,
        "captions": make_captions(rng, objects, image_size),
    }


def scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """Returns the generator of scene `index` of `split` (one of `SPLITS`) under `seed`.

    Seeding with the tuple (seed, split id, index), the split id being its position in `SPLITS`
    (train 0, test 1, validation 2), gives every scene its own independent stream, so train,
    validation and test never overlap and a scene can be rebuilt without its predecessors.
    """
    return np.random.default_rng([seed, SPLITS.index(split), index])


def generate_split(
    seed: int, num_images: int, image_size: int = 75, split: str = "train"
) -> Iterator[dict]:
    """Yields `num_images` scenes of `split` in index order; scene i is built by `scene_rng`.

    `split` is "train", "validation" (tune and evaluate during training on it) or "test"
    (scored once, at the end).
    """
    for index in range(num_images):
        yield generate_scene(scene_rng(seed, split, index), image_size)
