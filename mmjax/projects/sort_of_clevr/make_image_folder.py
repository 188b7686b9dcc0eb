r"""Write a folder of images and a JSONL file, as a user's own data would come, for the tutorial.

  python -m mmjax.projects.sort_of_clevr.make_image_folder --output=my_photos --num_images=1000 \
      [--questions]

Writes my_photos/images/scene_<i>.png (Sort-of-CLEVR scenes, 75x75 PNG) and
my_photos/data.jsonl: one line per image with its 5 captions, and with --questions also one line
per question ({"image", "question", "answer"}, 20 per image). Nothing here is needed to use
mmjax.data.prepare on real photos; it gives the README tutorial a folder anyone can make.
"""

from __future__ import annotations

import json
import os

import PIL.Image
from absl import app, flags

from mmjax.projects.sort_of_clevr import scenes as sort_of_clevr

flags.DEFINE_string("output", None, "Folder to create (images/ and data.jsonl inside).")
flags.DEFINE_integer("num_images", 1000, "Number of scenes.")
flags.DEFINE_integer("seed", 1, "Scene seed (1: scenes other than the built-in dataset's).")
flags.DEFINE_bool("questions", False, "Also write each scene's 20 question-answer lines.")
FLAGS = flags.FLAGS


def main(argv) -> None:
    """Writes the scenes as PNG files and their texts as JSONL lines."""
    del argv
    images = os.path.join(FLAGS.output, "images")
    os.makedirs(images, exist_ok=True)
    with open(os.path.join(FLAGS.output, "data.jsonl"), "w") as f:
        scenes = sort_of_clevr.generate_split(FLAGS.seed, FLAGS.num_images)
        for index, scene in enumerate(scenes):
            name = f"scene_{index:05d}.png"
            PIL.Image.fromarray(scene["image"]).save(os.path.join(images, name))
            f.write(json.dumps({"image": name, "captions": scene["captions"]}) + "\n")
            if FLAGS.questions:
                questions = scene["questions"]
                for text, answer in zip(questions["text"], questions["answer"], strict=True):
                    answer = sort_of_clevr.ANSWERS[answer]
                    f.write(json.dumps({"image": name, "question": text, "answer": answer}) + "\n")
    print(f"wrote {FLAGS.num_images} images to {images} and their texts to {f.name}")


if __name__ == "__main__":
    flags.mark_flag_as_required("output")
    app.run(main)
