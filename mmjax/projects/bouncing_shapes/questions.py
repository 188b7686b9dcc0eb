"""Bouncing shapes: question families, their answer rules and the balanced question sampler.

Eight families (`QUESTION_FAMILIES`); the two static ones can be answered from one frame, the
six motion ones (`MOTION_FAMILIES`) need the clip:

  shape        what is the shape of the X object?                      square/circle/triangle
  left         is the X object on the left halfway through the clip?  yes/no (frame T // 2)
  direction    which way does the X object move halfway through the clip?  left/right/up/down
  fastest      which object moves fastest?                            a colour
  slowest      which object moves slowest?                            a colour
  approach     does the X object move toward or away from the Y one?  toward/away
  wall_hits    how many times does the X object hit a wall?           0, 1, 2
  touch_order  which does the X object touch first, the Y object or the Z object?  Y or Z

Rules (`answer_table`): "left" is x < S/2 in frame T // 2; "direction" the dominant axis and
sign of the step from frame T // 2 to the next (`motion.step_direction`; in the middle of the
clip rather than at its start, where an object's place in the middle frame would tell: one
that started moving right cannot be near the left wall four frames later); speed is |velocity|;
"approach" compares the centres' distance in the first and the last frame and is asked only
when it changes by more than `APPROACH_MARGIN` pixels; "wall_hits" counts bounces (asked only
of objects whose every bounce shows, `tracks.track_is_clear`); "touch_order" asks about two
objects whose pixels both overlap X's at some frame (objects pass through each other), first
in different frames, and names them in random order. Asking which of two touched objects came
first, rather than what X touches, keeps one frame from telling: in the middle frame the object
touched first and the one touched later are about as often the nearer one (in time reversed,
first and later swap), where the object X touches at all is most often the nearest.

Every clip asks `QUESTION_SCHEDULE` (11 questions; one touch_order, since few clips have
two: asking for two tripled the generation time). The answers of shape, left, fastest,
slowest and touch_order are uniform by symmetry when subjects are drawn uniformly; those of
the `TARGETED` families are drawn first, uniformly (`plan_questions`): direction and wall_hits
subjects then get tracks with that answer (`tracks`), approach questions are drawn again until
the clip has a pair with it (`ask_questions`, `clips.generate_clip`).
"""

from __future__ import annotations

import itertools

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
    "touch_order",
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
    "touch_order",
)
NUM_QUESTIONS = len(QUESTION_SCHEDULE)
TEMPLATES: dict[str, str] = {
    "shape": "what is the shape of the {} object?",
    "left": "is the {} object on the left halfway through the clip?",
    "direction": "which way does the {} object move halfway through the clip?",
    "fastest": "which object moves fastest?",
    "slowest": "which object moves slowest?",
    "approach": "does the {} object move toward or away from the {} object?",
    "wall_hits": "how many times does the {} object hit a wall?",
    "touch_order": "which does the {} object touch first, the {} object or the {} object?",
}
MAX_WALL_HITS = 2  # asked counts: 0, 1, 2 (a clip of 16 frames may have objects bouncing more)
FAMILY_ANSWERS: dict[str, tuple[str, ...]] = {
    "shape": motion.SHAPES,
    "left": ("yes", "no"),
    "direction": motion.DIRECTIONS,
    "fastest": motion.COLOR_NAMES,
    "slowest": motion.COLOR_NAMES,
    "approach": ("toward", "away"),
    "wall_hits": tuple(str(n) for n in range(MAX_WALL_HITS + 1)),
    "touch_order": motion.COLOR_NAMES,
}
# Every answer, each once, in family order: the dataset's answer vocabulary.
ANSWERS: tuple[str, ...] = tuple(
    dict.fromkeys(a for f in QUESTION_FAMILIES for a in FAMILY_ANSWERS[f])
)
APPROACH_MARGIN = 4.0  # pixels the distance must change by for "approach" to be asked


def question_text(family: str, subjects: tuple[int, ...], colors: np.ndarray) -> str:
    """The English question of `family` about the objects `subjects` (indices, -1: none).

    `colors` int [N] are the objects' colour ids; the template takes as many colours as the
    family names objects (0 for fastest/slowest, 2 for approach, 3 for touch_order, else 1).
    """
    return TEMPLATES[family].format(*(motion.COLOR_NAMES[colors[k]] for k in subjects if k >= 0))


def wall_hit_counts(objects: dict) -> np.ndarray:
    """How many times each object bounced off a wall: int [N]."""
    return (np.asarray(objects["hit_wall"]) > 0).sum(1)


def first_touch_frames(objects: dict) -> np.ndarray:
    """The first frame objects i and j share a pixel: int [N, N]; -1 when they never do."""
    touch = motion.touching(objects["shape"], np.asarray(objects["position"]))  # [N, N, T]
    return np.where(touch.any(-1), touch.argmax(-1), -1)


def touch_order_table(objects: dict) -> np.ndarray:
    """Int [N, N, N]: for subject x and objects y, z, the one x touches first, or -1.

    -1 unless x touches both y and z, in different first frames.
    """
    first = first_touch_frames(objects)
    n = len(first)
    out = np.full((n, n, n), -1, np.int64)
    for x in range(n):
        for y in range(n):
            for z in range(n):
                fy, fz = first[x, y], first[x, z]
                if len({x, y, z}) == 3 and fy >= 0 and fz >= 0 and fy != fz:
                    out[x, y, z] = y if fy < fz else z
    return out


def answer_table(objects: dict, image_size: int) -> dict[str, np.ndarray]:
    """Each family's answer (index into FAMILY_ANSWERS[family]) about each subject.

    `objects` holds "color", "shape" int [N], "velocity" int [N, 2] (starting),
    "position" int [N, T, 2], "hit_wall" int [N, T]. Returns int arrays: [N] for the one-object
    families, [N, N] (subject, other) for "approach", [N, N, N] for "touch_order" (the colour
    id of the object touched first), [1] for fastest/slowest; -1 marks a question that is not
    asked (ill-defined).
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
    order = touch_order_table(objects)
    return {
        "shape": shapes.astype(np.int64),
        "left": np.where(position[:, middle, 0] < image_size / 2, 0, 1),
        "direction": motion.step_direction(position, middle).astype(np.int64),
        "fastest": colors[[np.argmax(speed)]].astype(np.int64),
        "slowest": colors[[np.argmin(speed)]].astype(np.int64),
        "approach": approach,
        "wall_hits": np.where(
            wall_hit_counts(objects) <= MAX_WALL_HITS, wall_hit_counts(objects), -1
        ),
        "touch_order": np.where(order >= 0, colors[order], -1),
    }


def _candidates(family: str, table: np.ndarray, used: set) -> list[tuple[tuple[int, ...], int]]:
    """(objects named, answer) of every asked, not yet used question of `family`.

    The objects are (subject,), (subject, other) or (subject, first named, second named);
    (-1,) for fastest/slowest. touch_order lists each pair of touched objects in both orders.
    """
    if family in ("fastest", "slowest"):
        return [((-1,), int(table[0]))]
    if family == "approach":
        pairs = zip(*np.nonzero(table >= 0))
        return [
            ((int(i), int(j)), int(table[i, j])) for i, j in pairs if frozenset((i, j)) not in used
        ]
    if family == "touch_order":
        return [
            ((int(x), int(y), int(z)), int(table[x, y, z]))
            for x, y, z in zip(*np.nonzero(table >= 0))
            if (x, frozenset((y, z))) not in used
        ]
    return [((int(i),), int(table[i])) for i in np.flatnonzero(table >= 0) if i not in used]


def _used_key(family: str, objects: tuple[int, ...]):
    if family == "approach":
        return frozenset(objects)
    if family == "touch_order":
        return (objects[0], frozenset(objects[1:]))
    return objects[0]


def feasible_answers(family: str, num_frames: int) -> tuple[str, ...]:
    """The answers of `family` a clip of `num_frames` frames is asked with (all of them)."""
    del num_frames  # every answer is reachable from 8 frames on
    return FAMILY_ANSWERS[family]


# Families whose answers would be skewed by physics: each question's answer is drawn first.
TARGETED = ("direction", "approach", "wall_hits")


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
                if family not in ("fastest", "slowest", "approach", "touch_order")
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
    "third" (the objects the question names, -1: none), "answer" (index into ANSWERS): int32
    [Q], "text": list of Q str}, or None.
    """
    table = answer_table(objects, image_size)
    used: dict[str, set] = {f: set() for f in QUESTION_FAMILIES}
    rows = []
    for family, subject, target in plan:
        candidates = _candidates(family, table[family], used[family])
        if subject >= 0:
            candidates = [c for c in candidates if c[0][0] == subject]
        matching = [c for c in candidates if FAMILY_ANSWERS[family][c[1]] == target]
        if target is not None and (matching or strict):
            candidates = matching
        if not candidates:
            return None
        named, answer = candidates[int(rng.integers(len(candidates)))]
        used[family].add(_used_key(family, named))
        named = named + (-1,) * (3 - len(named))
        rows.append((family, named, ANSWERS.index(FAMILY_ANSWERS[family][answer])))
    colors = np.asarray(objects["color"])
    return {
        "family": np.array([QUESTION_FAMILIES.index(r[0]) for r in rows], np.int32),
        "subject": np.array([r[1][0] for r in rows], np.int32),
        "other": np.array([r[1][1] for r in rows], np.int32),
        "third": np.array([r[1][2] for r in rows], np.int32),
        "answer": np.array([r[2] for r in rows], np.int32),
        "text": [question_text(f, named, colors) for f, named, _ in rows],
    }


def known_questions() -> list[str]:
    """The text of every question the sampler can ask (families x colours, pairs, triples)."""
    colors = np.arange(len(motion.COLOR_NAMES))
    texts = []
    for family in QUESTION_FAMILIES:
        arity = TEMPLATES[family].count("{}")
        for named in itertools.permutations(range(len(colors)), arity):
            texts.append(question_text(family, named, colors))
    return texts
