"""Bouncing shapes: one clip (objects, frames, questions, captions) from a seeded generator.

Every clip is a deterministic function of a `np.random.Generator`; `clip_rng` derives it from
(seed, split, index), so any clip of any split can be rebuilt on its own and splits never
overlap. Three splits: "train", "validation" (design choices, evaluations during training)
and "test" (scored once, at the end).

A clip's objects are drawn (`sample_objects`) until its events are well defined:
  - no object bounces on the first or the last step, touches a wall in the first or the last
    frame, or hits two walls on one step (a corner), so every bounce shows in the frames as a
    reversal between two visible moves;
  - the fastest object is at least `SPEED_GAP` px/frame faster than the next, and the slowest
    as much slower than the next, so "fastest" and "slowest" are plain to see;
  - no two objects touch in the first frame, so a touch is an event of the clip;
and the clip is drawn again when some question family has nothing to ask about it.
This module imports no TFDS; `tfds_builder` stores its output.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from mmjax.projects.bouncing_shapes import captions, motion, questions

# A split's position here seeds its clips (see `clip_rng`): append new splits, never reorder.
SPLITS: tuple[str, ...] = ("train", "validation", "test")
SPEED_GAP = 1.0  # px/frame between the fastest (slowest) object and the next
NUM_OBJECTS = 4
NUM_FRAMES = 8
IMAGE_SIZE = 64


def _track_is_clear(track: dict, image_size: int) -> np.ndarray:
    """Whether each object neither bounces on the first/last step nor sits on a wall then."""
    low, high = motion.limits(image_size)
    hit = track["hit_wall"]
    ends = track["position"][:, [0, -1]]
    on_wall = ((ends == low) | (ends == high)).any((1, 2))
    return (hit[:, 1] == 0) & (hit[:, -1] == 0) & ~track["corner"] & ~on_wall


class _TrackStream:
    """Clear candidate tracks, drawn `pool` at a time, handed out in draw order.

    A candidate is a uniform start in [R, S-1-R]^2 and a uniform integer velocity kept by
    `motion.valid_velocity`, whose track is clear (`_track_is_clear`). Simulating a pool at once
    costs about as much as simulating one track.
    """

    def __init__(self, rng: np.random.Generator, num_frames: int, image_size: int, pool: int = 256):
        self.rng, self.num_frames, self.image_size, self.pool = rng, num_frames, image_size, pool
        self.buffer: list[tuple[np.ndarray, np.ndarray, int]] = []

    def _refill(self) -> None:
        low, high = motion.limits(self.image_size)
        start = self.rng.integers(low, high + 1, size=(self.pool, 2))
        velocity = self.rng.integers(-motion.MAX_SPEED, motion.MAX_SPEED + 1, size=(self.pool, 2))
        track = motion.simulate(start, velocity, self.num_frames, self.image_size)
        clear = motion.valid_velocity(velocity) & _track_is_clear(track, self.image_size)
        hits = questions.wall_hit_counts(track)
        # Popped from the end: reversed, so candidates come out in draw order.
        self.buffer = [(start[k], velocity[k], int(hits[k])) for k in np.flatnonzero(clear)][::-1]

    def take(self, hits: int) -> tuple[np.ndarray, np.ndarray]:
        """(start, velocity) of the next candidate bouncing `hits` times (-1: any); skips others."""
        while True:
            if not self.buffer:
                self._refill()
            start, velocity, count = self.buffer.pop()
            if hits in (-1, count):
                return start, velocity


def _speeds_are_clear(velocity: np.ndarray) -> bool:
    speed = np.sort(np.hypot(*velocity.astype(np.float64).T))
    return speed[-1] - speed[-2] >= SPEED_GAP and speed[1] - speed[0] >= SPEED_GAP


def sample_objects(
    rng: np.random.Generator,
    num_objects: int = NUM_OBJECTS,
    num_frames: int = NUM_FRAMES,
    image_size: int = IMAGE_SIZE,
    hit_targets: np.ndarray | None = None,
) -> dict:
    """Draws a clip's objects and their motion (see the module doc for the conditions).

    `hit_targets` int [N] (-1: free) fixes how many times objects bounce. Returns int32
    arrays: "color" [N] (distinct ids into motion.COLORS, in painting order), "shape" [N],
    "start" [N, 2] and "velocity" [N, 2] (starting (x, y) and px/frame), "position"
    [N, T, 2], "hit_wall" [N, T] (`motion.simulate`), "wall_hits" [N].
    """
    if not 2 <= num_objects <= len(motion.COLORS):
        raise ValueError(f"num_objects must be in 2..{len(motion.COLORS)}, got {num_objects}")
    if num_frames < 4 or image_size < 64:
        raise ValueError(
            f"need num_frames >= 4 and image_size >= 64, got {num_frames}, {image_size}"
        )
    targets = np.full(num_objects, -1) if hit_targets is None else np.asarray(hit_targets)
    colors = rng.choice(len(motion.COLORS), size=num_objects, replace=False).astype(np.int32)
    shapes = rng.integers(0, len(motion.SHAPES), size=num_objects).astype(np.int32)
    stream = _TrackStream(rng, num_frames, image_size)
    while True:
        start, velocity = (np.array(a, np.int32) for a in zip(*(stream.take(h) for h in targets)))
        if _speeds_are_clear(velocity) and not motion.touching(shapes, start[:, None]).any():
            break
    track = motion.simulate(start, velocity, num_frames, image_size)
    return {
        "color": colors,
        "shape": shapes,
        "start": start,
        "velocity": velocity,
        "position": track["position"],
        "hit_wall": track["hit_wall"],
        "wall_hits": questions.wall_hit_counts(track).astype(np.int32),
    }


MAX_STRICT_DRAWS = 50  # after these, a clip takes any subject for a target it cannot meet


def generate_clip(
    rng: np.random.Generator,
    num_frames: int = NUM_FRAMES,
    image_size: int = IMAGE_SIZE,
    num_objects: int = NUM_OBJECTS,
) -> dict:
    """Generates one clip from `rng`.

    Returns {"video": uint8 [T, S, S, 3]; "objects": `sample_objects`'s dict;
    "questions": `questions.sample_questions`'s dict ("family", "subject", "other", "answer"
    int32 [Q], "text" Q str); "captions": `captions.NUM_CAPTIONS` str}.
    """
    plan = questions.plan_questions(rng, num_objects, num_frames)
    hit_targets = np.full(num_objects, -1)
    for family, subject, target in plan:
        if family == "wall_hits":
            hit_targets[subject] = int(target)
    draws = 0
    while True:
        objects = sample_objects(rng, num_objects, num_frames, image_size, hit_targets)
        asked = questions.ask_questions(rng, objects, image_size, plan, draws < MAX_STRICT_DRAWS)
        draws += 1
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
