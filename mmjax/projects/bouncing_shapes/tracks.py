"""Bouncing shapes: drawing the objects' tracks so that one frame does not give answers away.

A track is drawn from its middle frame m = T // 2 outwards: its place in frame m (the anchor)
is drawn uniformly in [R, S-1-R]^2 first, on its own, and only then a velocity at frame m;
the track is simulated backwards to frame 0 and forwards from there (`motion.simulate`; the
reflections are reversible). So where an object is in the middle frame, the frame a
single-frame baseline sees, carries no information about how it moves, except through the
conditions a track must meet. Objects a question asks about a motion property of (how many
times it bounces, which way it moves in the middle) get a velocity, among all those that give
the track the property the question's planned answer needs, again after the anchor is fixed,
so the answer does not depend on where the object is in the middle frame either, as far as
every answer can be reached from every place (docs/video.md has what one frame still tells).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from mmjax.projects.bouncing_shapes import motion

SPEED_GAP = 1.0  # px/frame between the fastest (slowest) object and the next
_SPEEDS = np.arange(-motion.MAX_SPEED, motion.MAX_SPEED + 1)
_VELOCITIES = np.stack(np.meshgrid(_SPEEDS, _SPEEDS, indexing="ij"), -1).reshape(-1, 2)
MAX_COMBINATIONS = 64  # combinations of candidates tried per set of anchors


def track_is_clear(track: dict, image_size: int) -> np.ndarray:
    """Whether each object neither bounces on the first/last step nor sits on a wall then.

    Also false for a corner (two walls on one step). `track` is `motion.simulate`'s output;
    returns bool [N]. With these, every bounce shows in the frames as a reversal between two
    visible steps.
    """
    low, high = motion.limits(image_size)
    hit = track["hit_wall"]
    ends = track["position"][:, [0, -1]]
    on_wall = ((ends == low) | (ends == high)).any((1, 2))
    return (hit[:, 1] == 0) & (hit[:, -1] == 0) & ~track["corner"] & ~on_wall


def anchored_candidates(
    rng: np.random.Generator, anchor: np.ndarray, num_frames: int, image_size: int
) -> tuple[np.ndarray, np.ndarray, dict, np.ndarray, np.ndarray]:
    """The tracks through `anchor` (x, y) in frame T // 2 with every velocity there.

    All (2 MAX_SPEED + 1)^2 integer velocities are tried, so a wanted answer that some
    velocity gives at this anchor is always found (a random pool missed the rare ones, and
    the anchor drawn again then told where such answers are).

    Returns (start int [K, 2], starting velocity int [K, 2], `motion.simulate` output,
    usable bool [K]: a valid velocity (`motion.valid_velocity`) and the forward simulation
    passing through the anchor, clear bool [K]: `track_is_clear`).
    """
    middle = num_frames // 2
    del rng  # every velocity is tried; the caller picks among them
    velocity = _VELOCITIES
    anchors = np.repeat(np.asarray(anchor)[None], len(velocity), 0)
    back = motion.simulate(anchors, -velocity, middle + 1, image_size)
    start = back["position"][:, -1]
    start_velocity = -back["final_velocity"]
    track = motion.simulate(start, start_velocity, num_frames, image_size)
    usable = motion.valid_velocity(velocity) & (track["position"][:, middle] == anchor).all(-1)
    # The first step (captions) and the middle one (questions) have a direction.
    usable &= motion.start_direction(track["position"]) >= 0
    usable &= motion.step_direction(track["position"], middle) >= 0
    clear = track_is_clear(track, image_size)
    return start.astype(np.int32), start_velocity.astype(np.int32), track, usable, clear


def _object_candidates(
    rng: np.random.Generator, hits: int, direction: int, num_frames: int, image_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """(start, velocity) int [K, 2] of K >= 1 usable tracks of one object through one anchor.

    The anchor is uniform; the tracks have the wanted bounce count and starting direction
    (-1: any). Only an object whose bounces are asked about must be clear (`track_is_clear`):
    the condition ties where an object may be to how fast it moves, which one frame would see.
    """
    low, high = motion.limits(image_size)
    while True:
        anchor = rng.integers(low, high + 1, size=2)
        start, velocity, track, usable, clear = anchored_candidates(
            rng, anchor, num_frames, image_size
        )
        if hits >= 0:  # a count asked about: every bounce must show
            usable &= clear & ((track["hit_wall"] > 0).sum(1) == hits)
        if direction >= 0:
            usable &= motion.step_direction(track["position"], num_frames // 2) == direction
        if usable.any():
            return start[usable], velocity[usable]


def _speeds_are_clear(velocity: np.ndarray) -> bool:
    speed = np.sort(np.hypot(*velocity.astype(np.float64).T))
    return speed[-1] - speed[-2] >= SPEED_GAP and speed[1] - speed[0] >= SPEED_GAP


def track_sets(
    rng: np.random.Generator,
    shapes: np.ndarray,
    wants: np.ndarray,
    num_frames: int,
    image_size: int,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yields (start, velocity) int32 [N, 2] of a clip's objects, anchored as in the module doc.

    `wants` int [N, 2]: each object's bounce count and starting direction (index into
    motion.DIRECTIONS), -1 for any. Every set has its fastest and its slowest object
    `SPEED_GAP` px/frame apart from the next, and no two objects touching in frame 0. Sets are
    combinations of each object's candidates through its anchor; after `MAX_COMBINATIONS`
    tries the objects get new anchors. The caller stops when a set suits it.
    """
    while True:
        pools = [_object_candidates(rng, h, d, num_frames, image_size) for h, d in wants]
        for _ in range(MAX_COMBINATIONS):
            pick = [int(rng.integers(len(p[0]))) for p in pools]
            start = np.stack([pools[i][0][k] for i, k in enumerate(pick)])
            velocity = np.stack([pools[i][1][k] for i, k in enumerate(pick)])
            if _speeds_are_clear(velocity) and not motion.touching(shapes, start[:, None]).any():
                yield start.astype(np.int32), velocity.astype(np.int32)
