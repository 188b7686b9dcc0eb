"""Bouncing shapes: the objects, their motion and the renderer, in pure NumPy.

A clip is T frames (8 by default) of a white S x S canvas (S = 64 by default) holding a few
objects (4 by default) of distinct colours, each a filled 11x11 square, a radius-5 disk or an
11-pixel-high triangle pointing up, centred on an integer pixel. Objects move at a constant
integer velocity (pixels per frame) and bounce off the walls: the centre stays in
[R, S-1-R] (R = 5, so an object always lies wholly inside the canvas), and a step that would
carry it past a wall is reflected there (x' = 2 * wall - x, velocity component negated), which
keeps positions integer and rendering exact. Objects pass through each other; where they
overlap, the later one in array order is painted on top.

Positions are (x = column, y = row), y growing downwards, so "up" is -y.
"""

from __future__ import annotations

import numpy as np

COLORS: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("red", (255, 0, 0)),
    ("green", (0, 255, 0)),
    ("blue", (0, 0, 255)),
    ("orange", (255, 156, 0)),
    ("gray", (128, 128, 128)),
    ("yellow", (255, 255, 0)),
)
COLOR_NAMES: tuple[str, ...] = tuple(name for name, _ in COLORS)
COLOR_TABLE = np.array([rgb for _, rgb in COLORS], np.uint8)
SHAPES: tuple[str, ...] = ("square", "circle", "triangle")
DIRECTIONS: tuple[str, ...] = ("left", "right", "up", "down")
# Wall codes of `simulate`'s "hit_wall": 0 no hit, then 1 + index into WALLS.
WALLS: tuple[str, ...] = ("left", "right", "top", "bottom")

HALF_SIZE = 5  # every shape spans centre +-5 on both axes
SIZE = 2 * HALF_SIZE + 1
MAX_SPEED = 8  # largest |velocity component|, pixels per frame (8: every place can reach a wall)
MIN_SPEED = 2.0  # smallest speed |v|, so every object visibly moves

_OFFSETS = np.arange(-HALF_SIZE, HALF_SIZE + 1)
# Stencils over the 11x11 box around a centre, indexed [shape, row, column].
STENCILS = np.stack(
    [
        np.ones((SIZE, SIZE), bool),
        _OFFSETS[:, None] ** 2 + _OFFSETS[None, :] ** 2 <= HALF_SIZE**2,
        # Row r (0 at the top) spans columns |c - 5| <= r / 2: apex up, base on the bottom row.
        2 * np.abs(_OFFSETS)[None, :] <= np.arange(SIZE)[:, None],
    ]
)


def _overlap_table() -> np.ndarray:
    """Whether shape a at (0, 0) and b at (dx, dy) share a pixel: bool [a, b, 4R+1, 4R+1].

    Indexed [a, b, dy + 2R, dx + 2R]; objects further apart on either axis never touch.
    """
    span = 4 * HALF_SIZE + 1
    table = np.zeros((len(SHAPES), len(SHAPES), span, span), bool)
    canvas = 3 * SIZE
    for a in range(len(SHAPES)):
        first = np.zeros((canvas, canvas), bool)
        first[SIZE : 2 * SIZE, SIZE : 2 * SIZE] = STENCILS[a]
        for b in range(len(SHAPES)):
            for dy in range(-2 * HALF_SIZE, 2 * HALF_SIZE + 1):
                for dx in range(-2 * HALF_SIZE, 2 * HALF_SIZE + 1):
                    second = np.zeros_like(first)
                    second[SIZE + dy : 2 * SIZE + dy, SIZE + dx : 2 * SIZE + dx] = STENCILS[b]
                    table[a, b, dy + 2 * HALF_SIZE, dx + 2 * HALF_SIZE] = (first & second).any()
    return table


OVERLAP = _overlap_table()


def limits(image_size: int) -> tuple[int, int]:
    """(lowest, highest) centre coordinate on either axis: [R, S-1-R]."""
    return HALF_SIZE, image_size - 1 - HALF_SIZE


def simulate(start: np.ndarray, velocity: np.ndarray, num_frames: int, image_size: int) -> dict:
    """Moves objects from `start` (int [N, 2]) at `velocity` (int [N, 2]) for T frames.

    Returns {"position": int32 [N, T, 2] (x, y) of each frame; "hit_wall": int32 [N, T],
    the wall an object bounced off on the step into frame t (1 + index into WALLS; 0 none;
    an object hitting two walls on one step gets the x wall's code); "corner": bool [N],
    whether an object hit two walls on one step; "final_velocity": int [N, 2], the velocity
    after the last step}. Velocities must stay below S - 2R - 1 so that a step crosses at most
    one wall per axis.
    """
    # Closed form, all frames at once: unfolded, the coordinate u = start - low + v t moves on
    # a line; reflecting at the walls folds it into [0, L] (L = high - low) with period 2L. A
    # bounce is u passing a wall (a multiple of L) strictly, as the step-by-step rule does.
    low, high = limits(image_size)
    span = high - low
    v = np.asarray(velocity, np.int64)[:, None, :]  # [N, 1, 2]
    u = np.asarray(start, np.int64)[:, None, :] - low + v * np.arange(num_frames)[None, :, None]
    folded = u % (2 * span)
    track = (low + np.where(folded <= span, folded, 2 * span - folded)).astype(np.int32)
    # Walls passed so far: moving up, L, 2L, ... (passed when u > kL); down, 0, -L, ...
    passed = np.where(
        v > 0, np.maximum(0, -(-u // span) - 1), np.where(v < 0, np.maximum(0, -(u // span)), 0)
    )
    crossed = np.zeros_like(passed, bool)
    crossed[:, 1:] = passed[:, 1:] > passed[:, :-1]
    # The k-th wall passed is the high one for odd k going up, for even k going down.
    over = crossed & np.where(v > 0, passed % 2 == 1, passed % 2 == 0)
    under = crossed & ~over
    x_code = np.where(under[..., 0], 1, np.where(over[..., 0], 2, 0))
    y_code = np.where(under[..., 1], 3, np.where(over[..., 1], 4, 0))
    hit_wall = np.where(x_code > 0, x_code, y_code).astype(np.int32)
    corner = ((x_code > 0) & (y_code > 0)).any(1)
    velocity = v[:, 0] * np.where(passed[:, -1] % 2 == 1, -1, 1)
    return {"position": track, "hit_wall": hit_wall, "corner": corner, "final_velocity": velocity}


def draw_frame(
    colors: np.ndarray, shapes: np.ndarray, centers: np.ndarray, image_size: int
) -> np.ndarray:
    """Renders objects (colour ids [N], shape ids [N], centres [N, 2] (x, y)): uint8 [S, S, 3].

    Objects are painted in array order on white, the later on top where they overlap.
    """
    image = np.full((image_size, image_size, 3), 255, np.uint8)
    for color, shape, (x, y) in zip(colors, shapes, centers):
        box = image[y - HALF_SIZE : y + HALF_SIZE + 1, x - HALF_SIZE : x + HALF_SIZE + 1]
        box[STENCILS[shape]] = COLOR_TABLE[color]
    return image


def draw_clip(objects: dict, image_size: int) -> np.ndarray:
    """Renders every frame of `objects` ("color" [N], "shape" [N], "position" [N, T, 2]).

    Returns uint8 [T, S, S, 3].
    """
    position = np.asarray(objects["position"])
    return np.stack(
        [
            draw_frame(objects["color"], objects["shape"], position[:, t], image_size)
            for t in range(position.shape[1])
        ]
    )


def touching(shapes: np.ndarray, position: np.ndarray) -> np.ndarray:
    """Whether objects i and j share a pixel in frame t: bool [N, N, T] (False on the diagonal).

    `shapes` int [N]; `position` int [N, T, 2] (x, y).
    """
    shapes = np.asarray(shapes)
    delta = position[None, :, :, :].astype(np.int64) - position[:, None, :, :]  # [N, N, T, 2]
    reach = 2 * HALF_SIZE
    near = (np.abs(delta) <= reach).all(-1)
    dx = np.clip(delta[..., 0], -reach, reach) + reach
    dy = np.clip(delta[..., 1], -reach, reach) + reach
    pair = OVERLAP[shapes[:, None, None], shapes[None, :, None], dy, dx]
    out = near & pair
    out[np.arange(len(shapes)), np.arange(len(shapes))] = False
    return out


def direction(step: np.ndarray) -> np.ndarray:
    """Int32 [N]: index into DIRECTIONS of each step's dominant axis and sign; -1 if none.

    `step` int [N, 2] (a velocity or a displacement); x dominant: left (dx < 0) or right; y
    dominant: up (dy < 0, towards row 0) or down; -1 where |dx| == |dy|.
    """
    dx, dy = np.asarray(step).T
    horizontal = np.abs(dx) > np.abs(dy)
    out = np.where(horizontal, np.where(dx < 0, 0, 1), np.where(dy < 0, 2, 3))
    return np.where(np.abs(dx) == np.abs(dy), -1, out).astype(np.int32)


def step_direction(position: np.ndarray, frame: int) -> np.ndarray:
    """Int32 [N]: the direction (`direction`) of each object's step from `frame` to the next.

    `position` int [N, T, 2]. This is the way the frames show an object moving then, a bounce
    on that step included.
    """
    position = np.asarray(position)
    return direction(position[:, frame + 1] - position[:, frame])


def start_direction(position: np.ndarray) -> np.ndarray:
    """Int32 [N]: `step_direction` from frame 0 (the way the captions say objects move)."""
    return step_direction(position, 0)


def valid_velocity(velocity: np.ndarray) -> np.ndarray:
    """Whether each velocity (int [K, 2]) has |vx| != |vy| and speed >= MIN_SPEED: bool [K].

    Velocities drawn uniformly over the integer vectors with components in [-MAX_SPEED,
    MAX_SPEED] and kept where this holds go in each of the four dominant directions equally
    often.
    """
    vx, vy = np.asarray(velocity).T
    return (np.abs(vx) != np.abs(vy)) & (np.hypot(vx, vy) >= MIN_SPEED)
