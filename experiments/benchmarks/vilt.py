"""Training speed against Hugging Face transformers' ViLT (PyTorch, CPU), at equal model shape.

ViLT (Kim et al. 2021) is the single-stream multimodal transformer a user would pick instead:
`ViltForQuestionAnswering`, randomly initialised from a `ViltConfig` (nothing is downloaded),
with the default VQA model's width, depth, heads, MLP width, image size, question length and
answer count. Its patch size is our patch stem's (5: 15x15 = 225 image tokens for a 75x75
image), or 15 (5x5 = 25 tokens, as our conv stem gives) for a conv stem. Both train on the
same (image, question) pairs: our step's 8 images x 20 questions are 160 ViLT examples, each
image repeated for each of its questions. ViLT trains with cross-entropy on its answer
logits, AdamW and gradient clipping at 1.0, as ours does.

Differences the architectures impose (stated in the results): our default stem embeds each
5x5 patch from the 15x15-pixel window around it and keeps only the 64 patches of the objects,
ViLT's projects every patch (+ a [CLS] image token); our question enters the fusion as one
token, the mean of its word embeddings, and the image tokens (which do not attend to text)
are computed once per image for its 20 questions, whereas ViLT runs every
(image, question) pair as one sequence of 226 + 16 tokens; ViLT adds a pooler and a 2x-wide
answer MLP; ours adds a word pointer whose distances bias the question's look-ups at the
image. `ours_single_stream` is our model without those savings and additions
(`share_image=False`, no pointer, `question_fusion="tokens"`, all 225 patches, each from its
own pixels): the same per-pair sequence as ViLT, so its ratio is the framework alone.

PyTorch gets as many intra-op threads as XLA's CPU client uses: one per core.
"""

from __future__ import annotations

import os

import jax
import numpy as np

from experiments.benchmarks.timing import interleaved_medians
from experiments.benchmarks.train_steps import StepSetup


def vilt_config(model_config, vocab_size: int, image_size: int, question_len: int, labels: int):
    """A `transformers.ViltConfig` of our VQA model's shape (`config.model`), see the docstring."""
    import transformers

    patch_size = model_config.patch_size if model_config.stem == "patch" else image_size // 5
    return transformers.ViltConfig(
        vocab_size=vocab_size,
        hidden_size=model_config.width,
        num_hidden_layers=model_config.depth,
        num_attention_heads=model_config.num_heads,
        intermediate_size=model_config.mlp_dim,
        hidden_dropout_prob=model_config.dropout_rate,
        attention_probs_dropout_prob=0.0,
        image_size=image_size,
        patch_size=patch_size,
        max_position_embeddings=question_len,
        num_labels=labels,
        pad_token_id=0,
    )


def torch_inputs(batch: dict, start: int = 0, stop: int | None = None):
    """ViLT's inputs and answers for images [start:stop] of our VQA batch, one pair per question.

    `batch` holds image uint8 [B, H, W, 3], question int [B, Q, L] and answer int [B, Q]; the
    result is (dict of pixel_values float [b*Q, 3, H, W] in [-1, 1], pixel_mask, input_ids,
    attention_mask, and answers long [b*Q], -1 for a padding question).
    """
    import torch

    images = np.asarray(jax.device_get(batch["image"]))[start:stop]
    questions = np.asarray(jax.device_get(batch["question"]))[start:stop]
    answers = np.asarray(jax.device_get(batch["answer"]))[start:stop]
    b, q, length = questions.shape
    size = images.shape[1]
    pixels = torch.tensor(images, dtype=torch.float32).permute(0, 3, 1, 2) / 127.5 - 1.0
    ids = questions.reshape(b * q, length)
    inputs = dict(
        pixel_values=pixels.repeat_interleave(q, dim=0),
        pixel_mask=torch.ones(b * q, size, size, dtype=torch.long),
        input_ids=torch.tensor(ids, dtype=torch.long),
        attention_mask=torch.tensor(ids != 0, dtype=torch.long),
    )
    return inputs, torch.tensor(answers.reshape(-1), dtype=torch.long)


class ViltStep:
    """ViLT training steps (forward, cross-entropy, backward, clipping, AdamW) on our VQA batches.

    Attributes:
      model: the `ViltForQuestionAnswering`.
      parameters: its parameter count.
      batch: the number of (image, question) pairs per step of `bench`'s batch.
    """

    def __init__(self, bench: StepSetup, threads: int, lr: float = 1e-3, b2: float = 0.999):
        import torch
        import transformers

        torch.set_num_threads(threads)
        torch.manual_seed(0)
        questions = bench.batch["question"]
        config = vilt_config(
            bench.config.model,
            bench.task.tokenizer.vocab_size,
            bench.batch["image"].shape[1],
            questions.shape[-1],
            bench.task.evaluator_context["num_classes"],
        )
        self.model = transformers.ViltForQuestionAnswering(config).train()
        self.parameters = sum(p.numel() for p in self.model.parameters())
        self.batch = int(np.prod(questions.shape[:2]))
        self._inputs, self._answers = torch_inputs(bench.batch)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=lr, betas=(0.9, b2), weight_decay=1e-4
        )
        self._torch = torch

    def train(self, inputs: dict, answers) -> float:
        """One step on `inputs` and `answers` (from `torch_inputs`); returns the loss."""
        torch = self._torch
        self.optimizer.zero_grad(set_to_none=True)
        logits = self.model(**inputs).logits
        loss = torch.nn.functional.cross_entropy(logits, answers, ignore_index=-1)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        return float(loss.detach())

    def __call__(self) -> float:
        """One step on the fixed batch built from `bench`'s; returns the loss."""
        return self.train(self._inputs, self._answers)


def measure(benches: dict[str, StepSetup], reps: int, steps: int) -> list[dict]:
    """`vilt` lines: our VQA step(s) (name -> setup) and ViLT's, timed in turns.

    Each repetition runs `steps` steps of each; one example is one (image, question) pair.
    """
    threads = os.cpu_count() or 1
    first = next(iter(benches.values()))
    vilt = ViltStep(first, threads)
    candidates = {name: (lambda bench=bench: bench.run(steps)) for name, bench in benches.items()}
    candidates["vilt"] = lambda: [vilt() for _ in range(steps)]
    seconds = {k: v / steps for k, v in interleaved_medians(candidates, reps).items()}
    pairs = {name: int(np.prod(bench.batch["answer"].shape)) for name, bench in benches.items()}
    pairs["vilt"] = vilt.batch
    params = {
        name: sum(int(np.prod(p.shape)) for p in jax.tree.leaves(bench.state.params))
        for name, bench in benches.items()
    }
    params["vilt"] = vilt.parameters
    vilt_rate = pairs["vilt"] / seconds["vilt"]
    lines = []
    for name in candidates:
        rate = pairs[name] / seconds[name]
        lines.append(
            {
                "section": "vilt",
                "model": MODEL_NAMES.get(name, name),
                "parameters": params[name],
                "batch": pairs[name],
                "step_ms": 1e3 * seconds[name],
                "examples_per_s": rate,
                "speed_vs_vilt": rate / vilt_rate,
                "threads": threads,
            }
        )
    return lines


MODEL_NAMES = {
    "ours": "mmjax VQATransformer (default)",
    "ours_single_stream": "mmjax VQATransformer, single stream per pair",
    "vilt": "HF ViltForQuestionAnswering (torch)",
}
