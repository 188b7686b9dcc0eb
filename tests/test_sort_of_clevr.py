import hashlib
import math
import os
import pickle

import numpy as np
import pytest

from mmjax.projects.sort_of_clevr import scenes as soc
from mmjax.projects.sort_of_clevr import tfds_builder as soc_tfds

S = 75
RGB = {
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "orange": (255, 156, 0),
    "gray": (128, 128, 128),
    "yellow": (255, 255, 0),
}
COLOR_NAMES = list(RGB)
ANSWERS = ["yes", "no", "square", "circle", "1", "2", "3", "4", "5", "6"]
# sha256 of the image of scene 0 (seed 0, S = 75) of each split, computed with the generator as
# it was before the validation split existed: adding it must leave train and test unchanged.
SCENE0_SHA256 = {
    "train": "97ef91a500bc5262d5ccb0066ce25df66cf1cd71a25c1615d6ddda6b2a4effad",
    "test": "3f4cf56eeb316e9066bf03d9360faf26043a831d85523c4a3e406ccedf5064d3",
}
# Split sizes of the TFDS build shared by the tests below (validation not the default 200).
SIZES = dict(num_train=40, num_validation=7, num_test=10)


def scenes(n, seed=0, split="train", image_size=S):
    return list(soc.generate_split(seed, n, image_size, split))


@pytest.fixture(scope="module")
def sample():
    return scenes(30)


# ---------------------------------------------------------------- independent references


def covers(shape, center, x, y):
    """Whether an object of `shape` at `center` paints pixel (x, y), written from the spec."""
    dx, dy = x - center[0], y - center[1]
    if shape == 0:
        return abs(dx) <= 5 and abs(dy) <= 5
    return dx * dx + dy * dy <= 25


def render(objects, size=S):
    """Paints objects in array order onto white, pixel by pixel."""
    image = np.full((size, size, 3), 255, np.uint8)
    for color, shape, center in zip(objects["color"], objects["shape"], objects["center"]):
        cx, cy = int(center[0]), int(center[1])
        for y in range(cy - 5, cy + 6):
            for x in range(cx - 5, cx + 6):
                if covers(shape, (cx, cy), x, y):
                    image[y, x] = RGB[COLOR_NAMES[color]]
    return image


def expected_answer(objects, color, subtype, size=S):
    """Answer text of one question, recomputed from the objects with plain Python."""
    colors = [int(c) for c in objects["color"]]
    shapes = ["square" if s == 0 else "circle" for s in objects["shape"]]
    centers = [(int(x), int(y)) for x, y in objects["center"]]
    i = colors.index(color)
    x, y = centers[i]
    if subtype == 0:
        return shapes[i]
    if subtype == 1:
        return "yes" if x < size / 2 else "no"
    if subtype == 2:
        return "yes" if y < size / 2 else "no"
    if subtype in (3, 4):
        dists = [
            (math.dist(centers[i], centers[j]), j) for j in range(6) if j != i
        ]  # ties: lowest index first, as in the generator
        pick = min(dists) if subtype == 3 else max(dists, key=lambda d: (d[0], -d[1]))
        return shapes[pick[1]]
    return str(sum(s == shapes[i] for s in shapes))


# ---------------------------------------------------------------- generator


def test_structure(sample):
    scene = sample[0]
    assert scene["image"].shape == (S, S, 3) and scene["image"].dtype == np.uint8
    objects, questions = scene["objects"], scene["questions"]
    assert objects["color"].tolist() == list(range(6))
    assert objects["shape"].shape == (6,) and set(objects["shape"].tolist()) <= {0, 1}
    assert objects["center"].shape == (6, 2) and objects["center"].dtype == np.int32
    for key in ("color", "relational", "subtype", "answer"):
        assert questions[key].shape == (20,) and questions[key].dtype == np.int32, key
    assert questions["code"].shape == (20, 11) and questions["code"].dtype == np.uint8
    assert len(questions["text"]) == 20 and len(scene["captions"]) == 5
    assert questions["relational"].tolist() == [0] * 10 + [1] * 10
    assert [name for name, _ in soc.COLORS] == COLOR_NAMES
    assert [rgb for _, rgb in soc.COLORS] == list(RGB.values())
    assert list(soc.ANSWERS) == ANSWERS


def test_same_seed_same_bytes():
    a, b = scenes(5, seed=3), scenes(5, seed=3)
    for x, y in zip(a, b):
        assert x["image"].tobytes() == y["image"].tobytes()
        assert x["questions"]["text"] == y["questions"]["text"]
        assert x["captions"] == y["captions"]
        np.testing.assert_array_equal(x["objects"]["center"], y["objects"]["center"])
    c = scenes(5, seed=4)
    assert a[0]["image"].tobytes() != c[0]["image"].tobytes()


def test_splits_and_indices_are_independent_streams():
    train, test = scenes(3, split="train"), scenes(3, split="test")
    for x, y in zip(train, test):
        assert x["image"].tobytes() != y["image"].tobytes()
    again = soc.generate_scene(soc.scene_rng(0, "train", 2))
    assert again["image"].tobytes() == train[2]["image"].tobytes()


def test_validation_split_is_its_own_stream():
    assert soc.SPLITS == ("train", "test", "validation")
    n = 50
    validation = {s["image"].tobytes() for s in scenes(n, split="validation")}
    assert len(validation) == n
    for split in ("train", "test"):
        assert validation.isdisjoint(s["image"].tobytes() for s in scenes(n, split=split)), split
    again = soc.generate_scene(soc.scene_rng(0, "validation", 4))
    assert again["image"].tobytes() in validation
    with pytest.raises(ValueError):
        soc.scene_rng(0, "val", 0)


def test_train_and_test_unchanged_by_validation_split():
    for split in ("train", "test"):
        scene = next(soc.generate_split(0, 1, S, split))
        assert hashlib.sha256(scene["image"].tobytes()).hexdigest() == SCENE0_SHA256[split]
        direct = soc.generate_scene(soc.scene_rng(0, split, 0))
        assert direct["image"].tobytes() == scene["image"].tobytes()


def test_image_matches_independent_render(sample):
    for scene in sample[:10]:
        np.testing.assert_array_equal(scene["image"], render(scene["objects"]))


def test_object_pixels(sample):
    for scene in sample:
        image, objects = scene["image"], scene["objects"]
        centers = objects["center"]
        for i, (color, shape, (cx, cy)) in enumerate(
            zip(objects["color"], objects["shape"], centers)
        ):
            rgb = RGB[COLOR_NAMES[color]]
            assert tuple(image[cy, cx]) == rgb
            corner = tuple(image[cy + 5, cx + 5])
            if shape == 1:
                assert corner != rgb
            elif not any(
                covers(objects["shape"][j], centers[j], cx + 5, cy + 5) for j in range(i + 1, 6)
            ):  # unless a later object is painted over it
                assert corner == rgb
        # Pixels covered by no object stay white.
        free = [
            (x, y)
            for y in range(S)
            for x in range(S)
            if not any(covers(s, c, x, y) for s, c in zip(objects["shape"], centers))
        ]
        assert all(tuple(image[y, x]) == (255, 255, 255) for x, y in free)


def test_centers_in_range_and_apart():
    for scene in scenes(200, seed=1):
        centers = scene["objects"]["center"]
        assert centers.min() >= 5 and centers.max() <= S - 6
        for i in range(6):
            for j in range(i + 1, 6):
                assert math.dist(centers[i], centers[j]) >= 10


def test_centers_for_other_image_size():
    scene = soc.generate_scene(np.random.default_rng(0), image_size=40)
    assert scene["image"].shape == (40, 40, 3)
    assert scene["objects"]["center"].max() <= 34
    np.testing.assert_array_equal(scene["image"], render(scene["objects"], 40))


def test_answers_recomputed_independently():
    for scene in scenes(300, seed=2):
        q = scene["questions"]
        for color, subtype, answer in zip(q["color"], q["subtype"], q["answer"]):
            assert ANSWERS[answer] == expected_answer(scene["objects"], color, subtype)


def test_answer_tie_break_goes_to_lower_index():
    objects = {
        "color": np.arange(6, dtype=np.int32),
        "shape": np.array([0, 1, 0, 1, 1, 1], np.int32),
        # red at the middle; green (circle) and blue (square) both 20 px away.
        "center": np.array([[30, 30], [50, 30], [10, 30], [30, 60], [60, 60], [5, 69]], np.int32),
    }
    questions = {"color": np.array([0, 2]), "subtype": np.array([3, 3])}
    answers = soc.answer_questions(objects, questions, S)
    assert [ANSWERS[a] for a in answers] == [
        expected_answer(objects, 0, 3),
        expected_answer(objects, 2, 3),
    ]
    assert ANSWERS[answers[0]] == "circle"


def test_count_answers_follow_binomial():
    counts = np.zeros(6)
    for scene in soc.generate_split(7, 3000, S):
        q = scene["questions"]
        count_questions = np.flatnonzero(q["subtype"] == 5)
        if len(count_questions):  # one per scene: questions of a scene are dependent
            counts[q["answer"][count_questions[0]] - ANSWERS.index("1")] += 1
    expected = counts.sum() * np.array([math.comb(5, k) for k in range(6)]) / 32
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 20.5, (counts, expected)  # 5 degrees of freedom, p = 0.001


def test_question_codes_and_text(sample):
    subtype_words = ["shape of the", "on the left", "on the top", "closest", "furthest", "how many"]
    for scene in sample:
        q = scene["questions"]
        for k in range(20):
            color, rel, sub, code = q["color"][k], q["relational"][k], q["subtype"][k], q["code"][k]
            assert rel == (sub >= 3)
            assert code[:6].tolist() == [int(c == color) for c in range(6)]
            assert code[6:8].tolist() == [1 - rel, rel]
            assert code[8:].tolist() == [int(j == sub % 3) for j in range(3)]
            text = q["text"][k]
            assert text == text.lower() and text.endswith("?")
            assert f"the {COLOR_NAMES[color]} object" in text
            assert [c for c in COLOR_NAMES if c in text] == [COLOR_NAMES[color]]
            assert subtype_words[sub] in text
            assert text == soc.question_text(color, sub)


def test_all_subtypes_and_colors_occur():
    sub, col = set(), set()
    for scene in scenes(20, seed=5):
        sub |= set(scene["questions"]["subtype"].tolist())
        col |= set(scene["questions"]["color"].tolist())
    assert sub == set(range(6)) and col == set(range(6))


def test_captions_describe_every_object(sample):
    for scene in sample:
        captions = scene["captions"]
        assert len(set(captions)) == 5
        objects = scene["objects"]
        for caption in captions:
            assert caption == caption.lower()
            for color, shape, (x, y) in zip(objects["color"], objects["shape"], objects["center"]):
                name, shape_name = COLOR_NAMES[color], soc.SHAPES[shape]
                assert f"{name} {shape_name}" in caption
                row = ["top", "middle", "bottom"][3 * y // S]
                col = ["left", "center", "right"][3 * x // S]
                where = "center" if (row, col) == ("middle", "center") else f"{row} {col}"
                if not caption.startswith("from left to right"):
                    assert where in caption
        assert soc.position_phrase(0, 0) == "top left"
        assert soc.position_phrase(37, 37) == "center"
        assert soc.position_phrase(74, 60) == "bottom right"


# ---------------------------------------------------------------- TFDS


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tfds_a")
    soc_tfds.build_sort_of_clevr(data_dir, **SIZES)
    return data_dir


def record_files(builder):
    return sorted(f for f in os.listdir(builder.data_path) if "array_record" in f)


def test_tfds_build_is_deterministic(built, tmp_path):
    a = soc_tfds.build_sort_of_clevr(built, **SIZES)
    b = soc_tfds.build_sort_of_clevr(tmp_path, **SIZES)
    files = record_files(a)
    assert len(files) == 3 and files == record_files(b)
    sizes = {name: split.num_examples for name, split in a.info.splits.items()}
    assert sizes == {"train": 40, "validation": 7, "test": 10}
    for name in files:
        assert (a.data_path / name).read_bytes() == (b.data_path / name).read_bytes(), name


def test_tfds_config_name_separates_settings(built):
    sizes = dict(num_train=6, num_validation=2, num_test=3, seed=1)
    builder = soc_tfds.build_sort_of_clevr(built, **sizes)
    assert builder.builder_config.name == "n6_v2_t3_s75_seed1"
    assert builder.data_path.parent.name == "n6_v2_t3_s75_seed1"
    assert len(soc_tfds.load_sort_of_clevr(built, "train", **sizes)) == 6
    assert len(soc_tfds.load_sort_of_clevr(built, "validation", **sizes)) == 2
    default = soc_tfds.make_config()  # never the name of a build without validation:
    assert default.name == "n9800_v200_t200_s75_seed0" != "n9800_200_s75_seed0"
    assert (default.num_train, default.num_validation, default.num_test) == (9800, 200, 200)
    assert soc_tfds.config_name(6, 3, 75, 1) == "n6_v200_t3_s75_seed1"
    # Only the validation size differs: another build, in another directory.
    other = soc_tfds.sort_of_clevr_builder(built, **{**sizes, "num_validation": 5})
    assert other.builder_config.name == "n6_v5_t3_s75_seed1" and not other.is_prepared()


def test_tfds_round_trip(built):
    for split, n in (("train", 40), ("validation", 7), ("test", 10)):
        source = soc_tfds.load_sort_of_clevr(built, split, **SIZES)
        assert len(source) == n
        for index in (0, n - 1):
            record = source[index]
            scene = soc.generate_scene(soc.scene_rng(0, split, index))
            assert record["id"] == index
            assert record["image"].dtype == np.uint8 and record["image"].shape == (S, S, 3)
            np.testing.assert_array_equal(record["image"], scene["image"])
            for key in ("color", "shape", "center"):
                assert record["objects"][key].dtype == np.int32
                np.testing.assert_array_equal(record["objects"][key], scene["objects"][key])
            for key in ("color", "relational", "subtype", "answer", "code"):
                assert record["questions"][key].dtype == scene["questions"][key].dtype
                np.testing.assert_array_equal(record["questions"][key], scene["questions"][key])
            # Text decodes as bytes.
            assert [t.decode() for t in record["questions"]["text"]] == scene["questions"]["text"]
            assert [c.decode() for c in record["captions"]] == scene["captions"]


def test_tfds_validation_split_differs_and_train_test_unchanged(built):
    images = {}
    for split in ("train", "validation", "test"):
        source = soc_tfds.load_sort_of_clevr(built, split, **SIZES)
        images[split] = [source[i]["image"].tobytes() for i in range(len(source))]
    assert len(images["validation"]) == 7 and len(set(images["validation"])) == 7
    for split in ("train", "test"):
        assert set(images["validation"]).isdisjoint(images[split]), split
        # Every stored train and test scene is the one generated without a validation split.
        direct = soc.generate_split(0, SIZES[f"num_{split}"], S, split)
        assert images[split] == [scene["image"].tobytes() for scene in direct], split
        assert hashlib.sha256(images[split][0]).hexdigest() == SCENE0_SHA256[split]


def test_tfds_build_is_noop_when_built(built, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("regenerated")

    monkeypatch.setattr(soc_tfds.soc, "generate_split", fail)
    soc_tfds.build_sort_of_clevr(built, **SIZES)


def test_tfds_missing_dataset_names_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        soc_tfds.load_sort_of_clevr(tmp_path, "train", **SIZES)


def test_tfds_interrupted_build_is_not_finished(tmp_path, monkeypatch):
    real = soc.generate_split

    def interrupted(*args, **kwargs):
        for i, scene in enumerate(real(*args, **kwargs)):
            if i == 5:
                raise KeyboardInterrupt
            yield scene

    sizes = dict(num_train=8, num_validation=3, num_test=2)
    monkeypatch.setattr(soc_tfds.soc, "generate_split", interrupted)
    with pytest.raises(KeyboardInterrupt):
        soc_tfds.build_sort_of_clevr(tmp_path, **sizes)
    with pytest.raises(FileNotFoundError):
        soc_tfds.load_sort_of_clevr(tmp_path, "train", **sizes)
    config_dir = tmp_path / "sort_of_clevr" / "n8_v3_t2_s75_seed0"
    assert not (config_dir / "1.0.0").exists()
    assert not [p for p in config_dir.iterdir() if "incomplete" in p.name]

    monkeypatch.setattr(soc_tfds.soc, "generate_split", real)
    soc_tfds.build_sort_of_clevr(tmp_path, **sizes)
    assert len(soc_tfds.load_sort_of_clevr(tmp_path, "train", **sizes)) == 8
    assert len(soc_tfds.load_sort_of_clevr(tmp_path, "validation", **sizes)) == 3


def test_tfds_source_and_builder_pickle(built, tmp_path):
    # grain worker processes receive the data source pickled.
    source = soc_tfds.load_sort_of_clevr(built, "validation", **SIZES)
    copy = pickle.loads(pickle.dumps(source))
    assert len(copy) == 7
    np.testing.assert_array_equal(copy[4]["image"], source[4]["image"])
    default = pickle.loads(pickle.dumps(soc_tfds.sort_of_clevr_builder(tmp_path)))
    assert default.builder_config.name == "n9800_v200_t200_s75_seed0"
    assert default.builder_config.num_validation == 200
