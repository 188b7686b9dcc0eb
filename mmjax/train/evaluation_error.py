"""An evaluator that failed during a run: what the trainer raises at its evaluation boundary.

The trainer catches any exception of an evaluation (the evaluator's own code, or the predict
function it drives), saves a checkpoint of the current step, and raises EvaluationError;
`mmjax.main` prints one line naming the evaluator and the error, and the full traceback goes to
`<workdir>/errors.log` (appended, one block per failure).
"""

from __future__ import annotations

import datetime
import os
import traceback

ERRORS_LOG = "errors.log"


class EvaluationError(RuntimeError):
    """The evaluation `name` (its evaluator's class `kind`) raised `error` at `step`.

    Attributes:
      name, kind, step: which evaluation failed, and when.
      error: the exception it raised.
      details: its full traceback, as text.
    """

    def __init__(self, name: str, kind: str, step: int, error: BaseException):
        self.name, self.kind, self.step, self.error = name, kind, step, error
        self.details = "".join(traceback.format_exception(error))
        first = (str(error).strip().splitlines() or [""])[0][:500]
        super().__init__(
            f"evals.{name} ({kind}) failed at step {step}: {type(error).__name__}: {first}"
        )

    def write_log(self, workdir: str) -> str:
        """Appends the traceback to `workdir`/errors.log; returns the file's path."""
        path = os.path.join(workdir, ERRORS_LOG)
        os.makedirs(workdir, exist_ok=True)
        stamp = datetime.datetime.now().isoformat(timespec="seconds")
        with open(path, "a") as f:
            f.write(f"{stamp} {self}\n{self.details}\n")
        return path
