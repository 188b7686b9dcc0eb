r"""What one frame tells about the answers: the empirical answer distribution given a frame.

For every question, a few keys describe what one frame of its clip shows: the subject's place
on a grid ("place"), its distance to the walls ("walls"), its distance to the nearest object
and that one's shape ("nearest"), the shapes of the others ("other_shapes"), its distance to
the other object named ("pair_distance", "pair_places") and, for touch_order, which of the two
named objects is nearer ("nearer"). For each family and key, the most frequent training answer
per key value is the prediction (the Bayes rule of that key, estimated on the training clips);
accuracy is measured on held-out clips. touch_order answers are scored as "first named" /
"second named", the colours varying from question to question; "fastest" and "slowest" score
each object's place by how often an object there was the fastest (slowest) in training and
answer the colour of the best. The best key per family estimates the most a single-frame model
could reach with that information: the motion families should stay near chance, the static
ones reach 100% on the frame they are about. "step", the subject's step from the frame to the
next (two frames), is the control that the method finds motion when it is there.

    python -m mmjax.projects.bouncing_shapes.single_frame --num_train=8000 --num_test=2000 \
      --output=mmjax/projects/bouncing_shapes/results/single_frame/single_frame.json
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter, defaultdict

import numpy as np

from mmjax.projects.bouncing_shapes import clips, motion, questions

GRID = 8  # px per cell of the place keys
STEP = 4  # px per bin of the distance keys


def _wall_distance(p: np.ndarray, image_size: int) -> tuple[int, int]:
    low, high = motion.limits(image_size)
    return tuple(int(min(v - low, high - v) // STEP) for v in p)


def question_keys(
    objects: dict,
    named: tuple[int, int, int],
    frame: int,
    image_size: int = clips.IMAGE_SIZE,
) -> dict:
    """The keys (name -> hashable value) of one question as frame `frame` shows it.

    Only what the frame shows (positions at `frame`, shapes), and the two-frame control "step"
    (the subject's step from `frame` to the next, from the one before for the last frame).
    """
    subject, other, third = named
    position = np.asarray(objects["position"])
    here = position[:, frame]
    keys: dict = {"none": 0}
    if subject < 0:
        return keys
    p = here[subject]
    others = [j for j in range(len(here)) if j != subject]
    distance = np.linalg.norm(here[others] - p, axis=-1)
    nearest = others[int(np.argmin(distance))]
    keys["place"] = (int(p[0] // GRID), int(p[1] // GRID))
    keys["walls"] = _wall_distance(p, image_size)
    keys["nearest"] = (int(distance.min() // STEP), int(objects["shape"][nearest]))
    keys["other_shapes"] = tuple(sorted(int(objects["shape"][j]) for j in others))
    k = min(frame, position.shape[1] - 2)
    step = position[subject, k + 1] - position[subject, k]
    keys["step"] = (int(np.sign(step[0])), int(np.sign(step[1])), bool(abs(step[0]) > abs(step[1])))
    if third >= 0:  # touch_order: which named object is nearer, and how much
        near = [np.linalg.norm(here[k] - p) for k in (other, third)]
        keys["nearer"] = (int(near[0] < near[1]), int(min(near) // STEP), int(max(near) // 8))
    if other >= 0:
        keys["pair_distance"] = int(np.linalg.norm(here[other] - p) // STEP)
        keys["pair_places"] = keys["place"] + (int(here[other][0] // 16), int(here[other][1] // 16))
    return keys


def _rows(clip_list: list[dict], frame: int) -> list[tuple[str, dict, str, dict]]:
    """(family, keys, answer, clip objects) of every question of `clip_list`."""
    rows = []
    for clip in clip_list:
        q, objects = clip["questions"], clip["objects"]
        named = zip(q["subject"], q["other"], q["third"])
        for f, n, a in zip(q["family"], named, q["answer"]):
            n = tuple(int(k) for k in n)
            family, answer = questions.QUESTION_FAMILIES[f], questions.ANSWERS[a]
            if family == "touch_order":  # the colours named vary: which of the two it is
                first_named = motion.COLOR_NAMES[objects["color"][n[1]]]
                answer = "first named" if answer == first_named else "second named"
            rows.append((family, question_keys(objects, n, frame), answer, objects))
    return rows


def _extreme_accuracy(train: list, test: list, family: str, frame: int) -> float:
    """Accuracy of answering fastest/slowest with the object whose place most often was it."""
    hits, seen = Counter(), Counter()
    for _, _, answer, objects in train:
        for c, p in zip(objects["color"], np.asarray(objects["position"])[:, frame]):
            cell = (int(p[0] // GRID), int(p[1] // GRID))
            seen[cell] += 1
            hits[cell] += motion.COLOR_NAMES[c] == answer
    correct = []
    for _, _, answer, objects in test:
        cells = [
            (int(p[0] // GRID), int(p[1] // GRID))
            for p in np.asarray(objects["position"])[:, frame]
        ]
        rate = [hits[c] / seen[c] if seen[c] else 0.0 for c in cells]
        correct.append(motion.COLOR_NAMES[objects["color"][int(np.argmax(rate))]] == answer)
    return float(np.mean(correct))


def single_frame_accuracy(train_clips: list[dict], test_clips: list[dict], frame: int) -> dict:
    """{family: {key: held-out accuracy of the key's Bayes rule}} for frame `frame`."""
    train, test = _rows(train_clips, frame), _rows(test_clips, frame)
    result: dict[str, dict[str, float]] = {}
    for family in questions.QUESTION_FAMILIES:
        tr = [r for r in train if r[0] == family]
        te = [r for r in test if r[0] == family]
        counts: dict = defaultdict(Counter)
        fallback = Counter(r[2] for r in tr)
        for _, keys, answer, _ in tr:
            for name, value in keys.items():
                counts[name, value][answer] += 1
        scores = {}
        for name in te[0][1]:
            guess = [
                (counts.get((name, keys[name])) or fallback).most_common(1)[0][0]
                for _, keys, _, _ in te
            ]
            scores[name] = float(np.mean([g == r[2] for g, r in zip(guess, te)]))
        if family in ("fastest", "slowest"):
            scores["place"] = _extreme_accuracy(tr, te, family, frame)
        result[family] = scores
    return result


def best_keys(frames: dict) -> dict:
    """Per frame: each family's best single-frame key and its accuracy, and the motion mean.

    `frames` is {frame name: `single_frame_accuracy` output}; the two-frame control "step" is
    left out. Returns {frame name: {"key": {family: name}, "accuracy": {family: value},
    "motion_mean": mean of the motion families' best accuracies}}.
    """
    out = {}
    for name, families in frames.items():
        keys = {
            f: max((k for k in v if k != "step"), key=lambda k, v=v: v[k])
            for f, v in families.items()
        }
        accuracy = {f: families[f][k] for f, k in keys.items()}
        motion = [accuracy[f] for f in questions.MOTION_FAMILIES]
        out[name] = {"key": keys, "accuracy": accuracy, "motion_mean": float(np.mean(motion))}
    return out


def main(argv=None) -> None:
    """Measures `single_frame_accuracy` on the first, middle and last frames; writes JSON."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num_train", type=int, default=8000)
    parser.add_argument("--num_test", type=int, default=2000)
    parser.add_argument("--num_frames", type=int, default=clips.NUM_FRAMES)
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)
    start, cpu = time.time(), time.process_time()
    train = list(clips.generate_split(0, args.num_train, "train", args.num_frames))
    test = list(clips.generate_split(0, args.num_test, "validation", args.num_frames))
    frames = {"first": 0, "middle": args.num_frames // 2, "last": args.num_frames - 1}
    out = {
        "num_train": args.num_train,
        "num_test": args.num_test,
        "num_frames": args.num_frames,
        "test_split": "validation",
        # Chance given what any frame shows: a colour among the clip's objects, one of the
        # two objects a touch_order question names.
        "chance": {
            f: 1 / len(questions.feasible_answers(f, args.num_frames))
            for f in questions.QUESTION_FAMILIES
        }
        | {"fastest": 1 / clips.NUM_OBJECTS, "slowest": 1 / clips.NUM_OBJECTS, "touch_order": 0.5},
        "frames": {name: single_frame_accuracy(train, test, k) for name, k in frames.items()},
    }
    out["best"] = best_keys(out["frames"])
    out["wall_s"], out["cpu_s"] = time.time() - start, time.process_time() - cpu
    out["load_average_1min"] = os.getloadavg()[0]
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(out, f, indent=1)
    print(json.dumps(out["frames"]["middle"], indent=1))


if __name__ == "__main__":
    main()
