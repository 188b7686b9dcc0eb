"""Bouncing shapes: one clip (objects, frames, questions, captions) from a seeded generator.

Every clip is a deterministic function of a `np.random.Generator`; `clip_rng` derives it from
(seed, split, index), so any clip of any split can be rebuilt on its own and splits never
overlap. Three splits: "train", "validation" (design choices, evaluations during training)
and "test" (scored once, at the end).

A clip's objects are drawn (`objects_stream`, `tracks`) until its events are well defined:
  - no object bounces on the first or the last step, touches a wall in the first or the last
    frame, or hits two walls on one step (a corner), so every bounce shows in the frames as a
    reversal between two visible moves;
  - the fastest object is at least `tracks.SPEED_GAP` px/frame faster than the next, and the slowest
    as much slower than the next, so "fastest" and "slowest" are plain to see;
  - no two objects touch in the first frame, so a touch is an event of the clip;
and the clip is drawn again when some question family has nothing to ask about it.
This module imports no TFDS; `tfds_builder` stores its output.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from mmjax.projects.bouncing_shapes import captions, motion, questions, tracks

# A split's position here seeds its clips (see `clip_rng`): append new splits, never reorder.
SPLITS: tuple[str, ...] = ("train", "validation", "test")
NUM_OBJECTS = 4
NUM_FRAMES = 8
IMAGE_SIZE = 64


def check_settings(num_frames: int, image_size: int, num_objects: int) -> None:
    """Raises ValueError naming a clip shape the generator cannot draw."""
    if not 3 <= num_objects <= len(motion.COLORS):  # touch_order names three objects
        raise ValueError(f"num_objects must be in 3..{len(motion.COLORS)}, got {num_objects}")
    # Two bounces, neither on the first or last step nor together, need 6 frames; past 24,
    # an object at the slowest speed can no longer cross the clip without a bounce.
    if not 6 <= num_frames <= 24:
        raise ValueError(f"num_frames must be in 6..24, got {num_frames}")
    if image_size < 64:
        raise ValueError(f"image_size must be at least 64, got {image_size}")


def objects_stream(
    rng: np.random.Generator,
    num_objects: int = NUM_OBJECTS,
    num_frames: int = NUM_FRAMES,
    image_size: int = IMAGE_SIZE,
    wants: np.ndarray | None = None,
) -> Iterator[dict]:
    """Yields candidate objects of one clip: same colours and shapes, new motion each time.

    `wants` int [N, 2] (-1: free) fixes how many times objects bounce and which way they
    start (`tracks.track_sets`). Each is a dict of int32 arrays: "color" [N] (distinct ids
    into motion.COLORS, in painting order), "shape" [N], "start" [N, 2] and "velocity" [N, 2]
    (starting (x, y) and px/frame), "position" [N, T, 2], "hit_wall" [N, T]
    (`motion.simulate`), "wall_hits" [N]. Raises ValueError for a clip shape it cannot draw.
    """
    check_settings(num_frames, image_size, num_objects)
    wants = np.full((num_objects, 2), -1) if wants is None else np.asarray(wants)
    colors = rng.choice(len(motion.COLORS), size=num_objects, replace=False).astype(np.int32)
    shapes = rng.integers(0, len(motion.SHAPES), size=num_objects).astype(np.int32)
    for start, velocity in tracks.track_sets(rng, shapes, wants, num_frames, image_size):
        track = motion.simulate(start, velocity, num_frames, image_size)
        yield {
            "color": colors,
            "shape": shapes,
            "start": start,
            "velocity": velocity,
            "position": track["position"],
            "hit_wall": track["hit_wall"],
            "wall_hits": questions.wall_hit_counts(track).astype(np.int32),
        }


MAX_STRICT_DRAWS = 500  # after these, a clip takes any subject for a target it cannot meet


def generate_clip(
    rng: np.random.Generator,
    num_frames: int = NUM_FRAMES,
    image_size: int = IMAGE_SIZE,
    num_objects: int = NUM_OBJECTS,
) -> dict:
    """Generates one clip from `rng`.

    Returns {"video": uint8 [T, S, S, 3]; "objects": an `objects_stream` dict;
    "questions": `questions.ask_questions`'s dict ("family", "subject", "other", "answer"
    int32 [Q], "text" Q str); "captions": `captions.NUM_CAPTIONS` str}.
    """
    plan = questions.plan_questions(rng, num_objects, num_frames)
    wants = np.full((num_objects, 2), -1)
    for family, subject, target in plan:
        if family == "wall_hits":
            wants[subject, 0] = int(target)
        elif family == "direction":
            wants[subject, 1] = motion.DIRECTIONS.index(target)
    stream = objects_stream(rng, num_objects, num_frames, image_size, wants)
    for draws, objects in enumerate(stream):
        asked = questions.ask_questions(rng, objects, image_size, plan, draws < MAX_STRICT_DRAWS)
        if asked is not None:
            break
    return {
        "video": motion.draw_clip(objects, image_size),
        "objects": objects,
        "questions": asked,
        "captions": captions.make_captions(rng, objects),
    }


def clip_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of clip `index` of `split` (one of `SPLITS`) under `seed`.

    Seeded with (seed, split id, index), the split id its position in `SPLITS`, so every clip
    has its own independent stream.
    """
    return np.random.default_rng([seed, SPLITS.index(split), index])


def generate_split(
    seed: int,
    num_clips: int,
    split: str = "train",
    num_frames: int = NUM_FRAMES,
    image_size: int = IMAGE_SIZE,
    num_objects: int = NUM_OBJECTS,
) -> Iterator[dict]:
    """Yields `num_clips` clips of `split` in index order; clip i is built from `clip_rng`."""
    for index in range(num_clips):
        yield generate_clip(clip_rng(seed, split, index), num_frames, image_size, num_objects)
