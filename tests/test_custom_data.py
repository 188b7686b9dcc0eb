"""Bring your own data: a JSONL file with deliberately bad lines converts with
`python -m mmjax.data.prepare` (bad lines reported by number and skipped), reads back through
data.name="custom", trains (a VQA run then answers through mmjax.predict with the dataset's own
answer words), and never leaves a half-written dataset behind."""

import collections
import io
import json
import os
import subprocess
import sys

import numpy as np
import PIL.Image
import pytest

from mmjax import predict
from mmjax.config_loader import load_config
from mmjax.data import catalog, custom
from mmjax.data.datasets import get_dataset
from mmjax.data.tokenizer import load_tokenizer
from mmjax.experiment import build_task
from mmjax.projects.sort_of_clevr import scenes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs", "caption_transformer.py")
VQA_CONFIG = os.path.join(ROOT, "configs", "vqa_transformer.py")
COLOURS = ["red", "green", "blue", "yellow"]


def write_image(path, colour: int, size, mode: str = "RGB"):
    image = np.zeros((*size, 3), np.uint8)
    image[..., colour % 3] = 200
    PIL.Image.fromarray(image).convert(mode).save(path)


def make_folder(root) -> tuple[str, str, list[dict]]:
    """12 good images (PNG, JPEG, one grey, one RGBA) and their JSONL lines, plus bad lines.

    Returns (jsonl path, images folder, the good records in file order).
    """
    images = root / "photos"
    images.mkdir()
    good = []
    for i in range(12):
        name = f"img{i}.{'jpg' if i % 2 else 'png'}"
        mode = "L" if i == 4 else "RGBA" if i == 6 else "RGB"
        write_image(images / name, i, (40 + 4 * i, 56), mode)
        colour = COLOURS[i % 4]
        captions = [f"a {colour} square", f"picture {i} is {colour}"]
        good.append({"image": name, "captions": captions})
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    buffer = io.BytesIO()
    PIL.Image.new("RGB", (30, 30)).save(buffer, format="PNG")
    (images / "truncated.png").write_bytes(buffer.getvalue()[:40])
    bad = {
        3: "{not json",
        5: json.dumps({"captions": ["no image here"]}),
        6: json.dumps({"image": "img1.jpg", "captions": ["fine", "   "]}),
        8: json.dumps({"image": "missing.png", "captions": ["a ghost"]}),
        9: json.dumps({"image": "broken.jpg", "captions": ["a broken file"]}),
        11: json.dumps({"image": "truncated.png", "captions": ["half a file"]}),
        12: json.dumps({"image": "img2.png", "question": "what colour?", "answer": ""}),
        14: json.dumps({"image": "img3.jpg"}),
    }
    lines, records = [], iter(good)
    for number in range(1, 8 + len(good) + 1):
        lines.append(bad[number] if number in bad else json.dumps(next(records)))
    for i, line in enumerate(good):  # then one question per image, on lines 21 to 32
        question = {"question": f"what colour is picture {i}?", "answer": COLOURS[i % 4]}
        lines.append(json.dumps({"image": line["image"], **question}))
    path = root / "data.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return str(path), str(images), good


BAD_LINES = [3, 5, 6, 8, 9, 11, 12, 14]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("byo")
    jsonl, images, good = make_folder(root)
    output = root / "datasets" / "mine"
    cmd = [sys.executable, "-m", "mmjax.data.prepare", f"--input={jsonl}", f"--images={images}"]
    cmd += [f"--output={output}"]
    result = subprocess.run(
        cmd + ["--validation_fraction=0.25"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    return result, str(output), jsonl, images, good


def test_bad_lines_are_reported_by_number_and_counted(prepared):
    result, output, _, _, _ = prepared
    assert result.returncode == 0, result.stderr[-3000:]
    reported = [line for line in result.stderr.splitlines() if ": line " in line]
    assert [int(line.split("line ")[1].split(":")[0]) for line in reported] == BAD_LINES
    reasons = "\n".join(reported)
    for reason in (
        "line 3: not valid JSON",
        "line 5: missing field 'image'",
        "line 6: caption 1 is empty",
        "line 8: image 'missing.png' cannot be read (no such file)",
        "line 9: image 'broken.jpg' cannot be read (not a readable image",
        "line 11: image 'truncated.png' cannot be read",
        "line 12: field 'answer' is empty",
        "line 14: missing field: a line needs 'captions', or 'question' and 'answer'",
    ):
        assert reason in reasons, reasons
    last = result.stdout.strip().splitlines()[-1]
    assert "9 train and 3 validation images, 24 captions, 12 questions" in last, last
    assert f"skipped 8 bad lines ({', '.join(map(str, BAD_LINES))})" in last, last
    with open(os.path.join(output, "prepare_summary.json")) as f:
        summary = json.load(f)
    assert [b["line"] for b in summary["bad_lines"]] == BAD_LINES
    # Nothing but the dataset is left next to it: the temporary directory is gone.
    assert os.listdir(os.path.dirname(output)) == ["mine"]


def test_records_read_back_in_file_order_with_their_captions(prepared):
    _, output, _, images, good = prepared
    config = load_config(f"{CONFIG}:size=tiny,dataset=custom,data_dir={output},image_size=24", [])
    seen = []
    for split in ("train", "validation"):
        source = get_dataset(config.data).source(split)
        for i in range(len(source)):
            record = source[i]
            assert record["image"].shape == (24, 24, 3) and record["image"].dtype == np.uint8
            seen.append(record)
    assert len(seen) == 12
    by_captions = {tuple(r["captions"]): r for r in seen}
    for i, line in enumerate(good):
        record = by_captions[tuple(line["captions"])]
        # Each image is one flat colour: channel i % 3 at 200 (grey and RGBA converted to RGB).
        pixels = record["image"].reshape(-1, 3).mean(0)
        if i == 4:
            assert np.allclose(pixels, pixels[0], atol=1) and pixels[0] > 0
        else:
            assert pixels.argmax() == i % 3 and abs(pixels.max() - 200) < 3, (i, pixels)


def test_vqa_takes_the_answers_and_tokenizer_saved_with_the_data(prepared):
    _, output, _, _, _ = prepared
    config = load_config(f"{VQA_CONFIG}:size=tiny,dataset=custom,data_dir={output}", [])
    task = build_task(config)
    task.prepare(None)
    train = get_dataset(config.data).source("train", images=False)
    answers = collections.Counter(a for r in train for a in r["questions"]["answer"])
    assert sum(answers.values()) == 9  # one question per training image
    with open(os.path.join(output, "answers.json")) as f:
        saved = json.load(f)["answers"]
    assert saved == sorted(answers, key=lambda a: (-answers[a], a))
    assert task.answers.answers == saved and task.tokenizer.vocab_size > 4
    record = get_dataset(config.data).source("validation")[0]
    example = task.preprocess(record)
    colour = record["questions"]["answer"][0]
    expected = saved.index(colour) if colour in saved else len(saved)  # unseen: "outside"
    assert list(example["answer"]) == [expected] + [-1] * 9
    record = get_dataset(config.data).source("train")[0]  # its words are all in the vocabulary
    words = task.tokenizer.decode(task.preprocess(record)["question"][0])
    assert words == record["questions"]["text"][0].replace("?", " ?")


def test_a_failed_conversion_leaves_nothing_behind(prepared, tmp_path, monkeypatch):
    _, output, jsonl, images, _ = prepared

    def crash(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(custom, "build_tokenizer", crash)
    target = tmp_path / "out" / "mine"
    with pytest.raises(RuntimeError, match="disk full"):
        custom.convert(jsonl, images, str(target), report=lambda line: None)
    assert os.listdir(tmp_path / "out") == []
    # Over an existing dataset, a failure leaves the old one as it was.
    before = sorted(os.listdir(output))
    with pytest.raises(RuntimeError, match="disk full"):
        custom.convert(jsonl, images, output, overwrite=True, report=lambda line: None)
    assert sorted(os.listdir(output)) == before
    assert os.listdir(os.path.dirname(output)) == ["mine"]
    with pytest.raises(ValueError, match="exists"):
        custom.convert(jsonl, images, output, report=lambda line: None)


@pytest.mark.parametrize("kind", ["word", "sentencepiece"])
def test_the_tokenizer_trained_on_the_data_round_trips_text(prepared, tmp_path, kind):
    _, _, jsonl, images, good = prepared
    output = tmp_path / kind
    summary = custom.convert(
        jsonl, images, str(output), tokenizer=kind, report=lambda line: None, seed=1
    )
    tokenizer = load_tokenizer(output / custom.TOKENIZER_FILES[kind])
    assert summary["tokenizer"]["vocab_size"] == tokenizer.vocab_size
    texts = {}
    for split in ("train", "validation"):
        source = catalog.load_split("custom", str(output), split, image_size=None)
        texts[split] = [c for record in source for c in record["captions"]]
    assert sorted(texts["train"] + texts["validation"]) == sorted(
        c for line in good for c in line["captions"]
    )
    for text in texts["train"]:
        ids = tokenizer.encode(text, 32)
        assert ids[0] == 2 and (ids != 0).sum() >= 4  # bos, at least two tokens, eos
        assert tokenizer.decode(ids[1:]) == text
    if kind == "word":  # built from the training split only: a validation image's number is new
        unseen = [t for t in texts["validation"] if t.startswith("picture")]
        assert unseen and all("<unk>" in tokenizer.decode(tokenizer.encode(t, 32)) for t in unseen)
    assert summary["longest_caption_tokens"] == max(
        len(tokenizer.tokens_to_ids(t)) + 2 for t in texts["train"] + texts["validation"]
    )


@pytest.mark.slow  # about 60 s: the README tutorial's commands, caption metrics included
def test_the_tutorial_from_a_folder_to_a_trained_captioner(prepared, tmp_path):
    _, output, _, _, _ = prepared
    cmd = [
        sys.executable,
        "-m",
        "mmjax.main",
        f"--config={CONFIG}:size=tiny,dataset=custom,data_dir={output},image_size=24,steps=30",
        f"--workdir={tmp_path / 'run'}",
        "--config.evals.test.batch_size=3",
    ]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "most frequent caption" in result.stdout
    with open(tmp_path / "run" / "metrics.jsonl") as f:
        records = [json.loads(line) for line in f]
    losses = [r["train/loss"] for r in records if "train/loss" in r]
    assert losses[-1] < 0.8 * losses[0], losses
    assert records[-1]["test/num_examples"] == 3
    assert 0.0 <= records[-1]["test/cider_d"]
    # The model was built on the dataset's own tokenizer, now also in the workdir.
    with open(tmp_path / "run" / "tokenizer.json") as f:
        with open(os.path.join(output, "tokenizer.json")) as g:
            assert json.load(f) == json.load(g)


def test_predict_answers_a_custom_vqa_run_with_the_datasets_own_answer_words(prepared, tmp_path):
    _, output, _, _, _ = prepared
    with open(os.path.join(output, "answers.json")) as f:
        words = json.load(f)["answers"]
    # Colours: none of them is one of Sort-of-CLEVR's answers (yes, no, shapes, counts).
    assert set(words) <= set(COLOURS) and not set(words) & set(scenes.ANSWERS)
    workdir = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "mmjax.main",
        f"--config={VQA_CONFIG}:size=tiny,dataset=custom,data_dir={output},image_size=30,steps=3",
        f"--workdir={workdir}",
        "--config.evals.validation.batch_size=3",
        "--config.evals.test.batch_size=3",
    ]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    model = predict.load(workdir)
    assert model.task_name == "vqa" and model.run.step == 3
    assert model.task.answers.answers == words  # the run's own vocabulary, read back
    record = get_dataset(model.run.config.data).source("train")[0]
    question = record["questions"]["text"][0]  # its words are all in the vocabulary
    answer = model.answer(record["image"], question)
    assert answer.text in words and answer.text == model.task.answers.answers[answer.index]
    PIL.Image.fromarray(record["image"]).save(tmp_path / "image.png")
    cmd = [sys.executable, "-m", "mmjax.predict", f"--workdir={workdir}"]
    cmd += [f"--image={tmp_path / 'image.png'}", f"--question={question}"]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == f"{answer.text} (probability {answer.probability:.3f})"
    # Free-text questions have no closed set to compare the question with.
    assert "closest one" not in result.stderr
