"""Bouncing shapes: question families, their answer rules and the balanced question sampler.

Eight families (`QUESTION_FAMILIES`); the two static ones can be answered from one frame, the
six motion ones (`MOTION_FAMILIES`) need the clip:

  shape        what is the shape of the X object?                      square/circle/triangle
  left         is the X object on the left halfway through the clip?  yes/no (frame T // 2)
  direction    which way does the X object move at the start?         left/right/up/down
  fastest      which object moves fastest?                            a colour
  slowest      which object moves slowest?                            a colour
  approach     does the X object move toward or away from the Y one?  toward/away
  wall_hits    how many times does the X object hit a wall?           0..4
  first_touch  what is the shape of the first object the X object touches?
                                                                       a shape, or nothing

Rules (`answer_table`): "left" is x < S/2 in frame T // 2; "direction" the dominant axis and
sign of the starting velocity; speed is |velocity|; "approach" compares the centres' distance
in the first and the last frame and is asked only when it changes by more than
`APPROACH_MARGIN` pixels; "wall_hits" counts bounces; "first_touch" is the shape of the object
whose pixels first overlap X's (objects pass through each other), asked only when one object is
first (no two first touched in the same frame).

Every clip asks `QUESTION_SCHEDULE` (12 questions). The answers of shape, left, direction,
fastest and slowest are uniform by symmetry when subjects are drawn uniformly; those of the
`TARGETED` families are not (most objects bounce once, touch nothing, ...), so for them the
answer is drawn first, uniformly (`plan_questions`), and the clip is drawn again until it has a
subject with that answer (`ask_questions`, `clips.generate_clip`).
"""

from __future__ import annotations

import numpy as np

from mmjax.projects.bouncing_shapes import motion

QUESTION_FAMILIES: tuple[str, ...] = (
    "shape",
    "left",
    "direction",
    "fastest",
    "slowest",
    "approach",
    "wall_hits",
    "first_touch",
)
STATIC_FAMILIES: tuple[str, ...] = ("shape", "left")
MOTION_FAMILIES: tuple[str, ...] = tuple(f for f in QUESTION_FAMILIES if f not in STATIC_FAMILIES)
# The families of a clip's questions, in order.
QUESTION_SCHEDULE: tuple[str, ...] = (
    "shape",
    "left",
    "direction",
    "direction",
    "fastest",
    "slowest",
    "approach",
    "approach",
    "wall_hits",
    "wall_hits",
    "first_touch",
    "first_touch",
)
NUM_QUESTIONS = len(QUESTION_SCHEDULE)
TEMPLATES: dict[str, str] = {
    "shape": "what is the shape of the {} object?",
    "left": "is the {} object on the left halfway through the clip?",
    "direction": "which way does the {} object move at the start?",
    "fastest": "which object moves fastest?",
    "slowest": "which object moves slowest?",
    "approach": "does the {} object move toward or away from the {} object?",
    "wall_hits": "how many times does the {} object hit a wall?",
    "first_touch": "what is the shape of the first object the {} object touches?",
}
MAX_WALL_HITS = 4
FAMILY_ANSWERS: dict[str, tuple[str, ...]] = {
    "shape": motion.SHAPES,
    "left": ("yes", "no"),
    "direction": motion.DIRECTIONS,
    "fastest": motion.COLOR_NAMES,
    "slowest": motion.COLOR_NAMES,
    "approach": ("toward", "away"),
    "wall_hits": tuple(str(n) for n in range(MAX_WALL_HITS + 1)),
    "first_touch": motion.SHAPES + ("nothing",),
}
# Every answer, each once, in family order: the dataset's answer vocabulary.
ANSWERS: tuple[str, ...] = tuple(
    dict.fromkeys(a for f in QUESTION_FAMILIES for a in FAMILY_ANSWERS[f])
)
APPROACH_MARGIN = 4.0  # pixels the distance must change by for "approach" to be asked


def question_text(family: str, subject: int, other: int, colors: np.ndarray) -> str:
    """The English question of `family` about object `subject` (and `other`, for approach).

    `colors` int [N] are the objects' colour ids; `subject`/`other` index objects (-1: none).
    """
    names = [motion.COLOR_NAMES[c] for c in colors]
    if family in ("fastest", "slowest"):
        return TEMPLATES[family]
    if family == "approach":
        return TEMPLATES[family].format(names[subject], names[other])
    return TEMPLATES[family].format(names[subject])


def wall_hit_counts(objects: dict) -> np.ndarray:
    """How many times each object bounced off a wall: int [N]."""
    return (np.asarray(objects["hit_wall"]) > 0).sum(1)


def first_touch(objects: dict) -> np.ndarray:
    """The object each one first touches, int [N]: -1 none, -2 a tie (ill-defined)."""
    touch = motion.touching(objects["shape"], np.asarray(objects["position"]))  # [N, N, T]
    n, _, frames = touch.shape
    out = np.full(n, -1, np.int64)
    for i in range(n):
        hit_frames = np.flatnonzero(touch[i].any(0))
        if len(hit_frames):
            first = np.flatnonzero(touch[i, :, hit_frames[0]])
            out[i] = first[0] if len(first) == 1 else -2
    return out


def answer_table(objects: dict, image_size: int) -> dict[str, np.ndarray]:
    """Each family's answer (index into FAMILY_ANSWERS[family]) about each subject.

    `objects` holds "color", "shape" int [N], "velocity" int [N, 2] (starting),
    "position" int [N, T, 2], "hit_wall" int [N, T]. Returns int arrays: [N] for the one-object
    families, [N, N] (subject, other) for "approach", [1] for fastest/slowest; -1 marks a
    question that is not asked (ill-defined).
    """
    position = np.asarray(objects["position"], np.int64)
    shapes = np.asarray(objects["shape"])
    colors = np.asarray(objects["color"])
    speed = np.hypot(*np.asarray(objects["velocity"], np.float64).T)
    middle = position.shape[1] // 2
    distance = np.linalg.norm(position[:, None] - position[None, :], axis=-1)  # [N, N, T]
    change = distance[..., -1] - distance[..., 0]
    approach = np.where(change < -APPROACH_MARGIN, 0, np.where(change > APPROACH_MARGIN, 1, -1))
    np.fill_diagonal(approach, -1)
    touched = first_touch(objects)
    nothing = len(motion.SHAPES)
    return {
        "shape": shapes.astype(np.int64),
        "left": np.where(position[:, middle, 0] < image_size / 2, 0, 1),
        "direction": motion.direction(objects["velocity"]).astype(np.int64),
        "fastest": colors[[np.argmax(speed)]].astype(np.int64),
        "slowest": colors[[np.argmin(speed)]].astype(np.int64),
        "approach": approach,
        "wall_hits": np.minimum(wall_hit_counts(objects), MAX_WALL_HITS),
        "first_touch": np.where(
            touched == -2, -1, np.where(touched == -1, nothing, shapes[touched])
        ),
    }


def _candidates(family: str, table: np.ndarray, used: set) -> list[tuple[int, int, int]]:
    """(subject, other, answer) of every asked, not yet used question of `family`."""
    if family in ("fastest", "slowest"):
        return [(-1, -1, int(table[0]))]
    if family == "approach":
        return [
            (int(i), int(j), int(table[i, j]))
            for i, j in zip(*np.nonzero(table >= 0))
            if (i, j) not in used and (j, i) not in used
        ]
    return [(int(i), -1, int(table[i])) for i in np.flatnonzero(table >= 0) if i not in used]


def feasible_answers(family: str, num_frames: int) -> tuple[str, ...]:
    """The answers of `family` a clip of `num_frames` can have (fewer wall hits in short clips).

    An object crosses the S - 2R - 1 >= 53 free pixels of an axis at most 6 px a frame, so in
    T - 1 steps it bounces at most ceil(6 (T - 1) / 53) times per axis (with S >= 64).
    """
    if family != "wall_hits":
        return FAMILY_ANSWERS[family]
    per_axis = -(-motion.MAX_SPEED * (num_frames - 1) // 53)
    return FAMILY_ANSWERS[family][: min(2 * per_axis, MAX_WALL_HITS) + 1]


# Families whose answers would be skewed by physics: each question's answer is drawn first.
TARGETED = ("approach", "wall_hits", "first_touch")


def plan_questions(rng: np.random.Generator, num_objects: int, num_frames: int) -> list[tuple]:
    """Draws (family, subject, target answer) for each question of `QUESTION_SCHEDULE`.

    shape, left and direction get distinct uniform subjects (their answers are uniform by
    symmetry); fastest and slowest have none (-1). The targeted families get answers drawn
    uniformly from `feasible_answers` (distinct within a family while they last), which
    `ask_questions` must meet; wall_hits also get their subjects now, so that the objects can be
    drawn with those bounce counts. Other targets are None.
    """
    plan = []
    for family in QUESTION_FAMILIES:
        count = QUESTION_SCHEDULE.count(family)
        subjects = rng.permutation(num_objects)[:count]
        answers = list(feasible_answers(family, num_frames))
        targets = [answers[k] for k in rng.permutation(len(answers))]
        targets += [answers[k] for k in rng.integers(len(answers), size=count)]
        for k in range(count):
            subject = (
                int(subjects[k])
                if family not in ("fastest", "slowest", "approach", "first_touch")
                else -1
            )
            target = targets[k] if family in TARGETED else None
            plan.append((family, subject, target))
    order = {f: [p for p in plan if p[0] == f] for f in QUESTION_FAMILIES}
    return [order[f].pop(0) for f in QUESTION_SCHEDULE]


def ask_questions(
    rng: np.random.Generator, objects: dict, image_size: int, plan: list[tuple], strict: bool
) -> dict | None:
    """The clip's questions of `plan` (`plan_questions`), subjects distinct within a family.

    A planned target that no unused subject of the clip has makes the result None when
    `strict`; otherwise any unused subject is taken. Returns {"family", "subject", "other",
    "answer" (index into ANSWERS): int32 [Q], "text": list of Q str}, or None.
    """
    table = answer_table(objects, image_size)
    used: dict[str, set] = {f: set() for f in QUESTION_FAMILIES}
    rows = []
    for family, subject, target in plan:
        candidates = _candidates(family, table[family], used[family])
        if subject >= 0:
            candidates = [c for c in candidates if c[0] == subject]
        matching = [c for c in candidates if FAMILY_ANSWERS[family][c[2]] == target]
        if target is not None and (matching or strict):
            candidates = matching
        if not candidates:
            return None
        subject, other, answer = candidates[int(rng.integers(len(candidates)))]
        used[family].add((subject, other) if family == "approach" else subject)
        rows.append((family, subject, other, ANSWERS.index(FAMILY_ANSWERS[family][answer])))
    colors = np.asarray(objects["color"])
    return {
        "family": np.array([QUESTION_FAMILIES.index(r[0]) for r in rows], np.int32),
        "subject": np.array([r[1] for r in rows], np.int32),
        "other": np.array([r[2] for r in rows], np.int32),
        "answer": np.array([r[3] for r in rows], np.int32),
        "text": [question_text(f, s, o, colors) for f, s, o, _ in rows],
    }


def known_questions(num_objects_colors: int = len(motion.COLOR_NAMES)) -> list[str]:
    """The text of every question the sampler can ask (all families x colours x pairs)."""
    colors = np.arange(num_objects_colors)
    texts = []
    for family in QUESTION_FAMILIES:
        if family in ("fastest", "slowest"):
            texts.append(TEMPLATES[family])
        elif family == "approach":
            texts += [question_text(family, i, j, colors) for i in colors for j in colors if i != j]
        else:
            texts += [question_text(family, i, -1, colors) for i in colors]
    return texts
