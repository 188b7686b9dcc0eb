"""Use a trained model: load a workdir, then answer, caption, rank captions or reconstruct.

  from mmjax import predict
  model = predict.load("runs/vqa")
  model.answer("scene.png", "is the red object on the left?")   # Answer(text='yes', ...)

The command line (`python -m mmjax.predict --help`) does the same for one image.
"""

from mmjax.predict.errors import InputError
from mmjax.predict.images import read_image, save_image
from mmjax.predict.predictor import Answer, Caption, Predictor, Ranked, Reconstruction, load
from mmjax.predict.run import LoadedRun, load_run

__all__ = [
    "Answer",
    "Caption",
    "InputError",
    "LoadedRun",
    "Predictor",
    "Ranked",
    "Reconstruction",
    "load",
    "load_run",
    "read_image",
    "save_image",
]
