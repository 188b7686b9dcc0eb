"""Bouncing shapes: clip captions that say what happens, and a checker of the motion they name.

Every clip has `NUM_CAPTIONS` captions. The first is canonical, for captioning: objects in
colour order (`motion.COLORS`), each "the <colour> <shape> moves <direction>" and, for each
bounce in order, "and bounces off the <wall> wall" / "then the <wall> wall", clauses joined
by "; ":

  "the red circle moves left and bounces off the left wall; the blue square moves up."

The other four use other wordings and a random object order each (for retrieval). In every
wording an object's starting direction (`motion.start_direction`) is the first direction word after
its colour, which is what `named_directions` reads back.
"""

from __future__ import annotations

import re

import numpy as np

from mmjax.projects.bouncing_shapes import motion

NUM_CAPTIONS = 5
_NUMBER_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_NUMBER_WORDS += ("ten", "eleven", "twelve")


def _number(n: int) -> str:
    return _NUMBER_WORDS[n] if n < len(_NUMBER_WORDS) else "many"


def _times(k: int) -> str:
    """How a caption says an object bounced k times ("never bounces", "bounces twice", ...)."""
    return (
        ("never bounces", "bounces once", "bounces twice")[k]
        if k < 3
        else f"bounces {_number(k)} times"
    )


def _walls(hit_wall: np.ndarray) -> list[str]:
    return [motion.WALLS[code - 1] for code in hit_wall if code > 0]


def _a(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def _join(phrases: list[str]) -> str:
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


def _bounce_phrase(walls: list[str]) -> str:
    if not walls:
        return ""
    return " and bounces off the " + " then the ".join(f"{w} wall" for w in walls)


def canonical_caption(objects: dict) -> str:
    """The caption listing objects in colour order with direction and bounces (module doc)."""
    order = np.argsort(np.asarray(objects["color"]), kind="stable")
    directions = motion.start_direction(objects["position"])
    clauses = []
    for i in order:
        color = motion.COLOR_NAMES[objects["color"][i]]
        shape = motion.SHAPES[objects["shape"][i]]
        walls = _walls(np.asarray(objects["hit_wall"][i]))
        clauses.append(
            f"the {color} {shape} moves {motion.DIRECTIONS[directions[i]]}{_bounce_phrase(walls)}"
        )
    return "; ".join(clauses) + "."


def make_captions(rng: np.random.Generator, objects: dict) -> list[str]:
    """The clip's `NUM_CAPTIONS` captions: the canonical one, then four other wordings.

    `objects` holds "color", "shape" int [N], "velocity" int [N, 2], "hit_wall" int [N, T].
    """
    directions = motion.start_direction(objects["position"])
    speed = np.hypot(*np.asarray(objects["velocity"], np.float64).T)
    described = [
        (
            motion.COLOR_NAMES[c],
            motion.SHAPES[s],
            motion.DIRECTIONS[d],
            len(_walls(np.asarray(h))),
        )
        for c, s, d, h in zip(objects["color"], objects["shape"], directions, objects["hit_wall"])
    ]
    n = len(described)

    def shuffled():
        return [described[i] for i in rng.permutation(n)]

    fast, slow = described[int(np.argmax(speed))], described[int(np.argmin(speed))]
    return [
        canonical_caption(objects),
        _join([f"{_a(c)} {s} heading {d}" for c, s, d, _ in shuffled()]) + ".",
        "there is "
        + _join([f"{_a(c)} {s} moving {d} that {_times(k)}" for c, s, d, k in shuffled()])
        + ".",
        f"{_number(n)} shapes move: "
        + "; ".join(f"the {c} {s} starts going {d}" for c, s, d, _ in shuffled())
        + f"; the {fast[0]} {fast[1]} is fastest and the {slow[0]} {slow[1]} is slowest.",
        "; ".join(
            f"the {c} {s} goes {d} and hits {_number(k)} wall{'' if k == 1 else 's'}"
            for c, s, d, k in shuffled()
        )
        + ".",
    ]


def vocabulary_texts() -> list[str]:
    """Texts holding every word a caption can use (for a fixed caption tokenizer)."""
    words = list(motion.COLOR_NAMES + motion.SHAPES + motion.DIRECTIONS + motion.WALLS)
    words += list(_NUMBER_WORDS) + ["many never bounces once twice times"]
    templates = [
        "the a moves and bounces off the wall then the wall; .",
        "a an heading , and there is moving that shapes move: the starts going",
        "the is fastest and the is slowest. the goes and hits wall walls",
    ]
    return templates + words


_WORD = re.compile(r"[a-z]+|[;,.:]")
_CLAUSE_END = {";", ",", ".", ":"}


def named_directions(caption: str) -> dict[str, str | None]:
    """The starting direction `caption` gives each colour it names (None: named, no direction).

    After each mention of a colour word, the first direction word ("left", "right", "up",
    "down") before the next colour word or clause mark (; , . :) is its direction; a direction
    word followed by "wall" names a wall, not a direction, and is skipped. The first mention
    with a direction wins. Colours the caption never names are absent.
    """
    words = _WORD.findall(caption.lower())
    out: dict[str, str | None] = {}
    for k, word in enumerate(words):
        if word not in motion.COLOR_NAMES or out.get(word) is not None:
            continue
        out.setdefault(word, None)
        for j in range(k + 1, len(words)):
            following = words[j + 1] if j + 1 < len(words) else ""
            if words[j] in motion.COLOR_NAMES or words[j] in _CLAUSE_END:
                break
            if words[j] in motion.DIRECTIONS and following != "wall":
                out[word] = words[j]
                break
    return out


def motion_verdicts(caption: str, colors: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """Whether `caption` names each object's starting direction correctly: bool [N].

    `colors` int [N] colour ids and `directions` int [N] indices into DIRECTIONS (the
    dataset's annotations "object_color" and "object_direction").
    """
    named = named_directions(caption)
    return np.array(
        [
            named.get(motion.COLOR_NAMES[c]) == motion.DIRECTIONS[d]
            for c, d in zip(colors, directions)
        ],
        bool,
    )


def motion_accuracy(caption: str, objects: dict) -> float:
    """Share of the clip's objects whose starting direction `caption` names correctly.

    `objects` is a record's "objects" ("color" [N], "velocity" [N, 2]) or its annotations
    ("object_color", "object_direction").
    """
    if "object_direction" in objects:
        colors, directions = objects["object_color"], objects["object_direction"]
    else:
        colors, directions = objects["color"], motion.start_direction(objects["position"])
    return float(np.mean(motion_verdicts(caption, np.asarray(colors), np.asarray(directions))))
