"""The least time a train step's matmuls need on this machine: each of the step's dots, alone.

Utilisation alone does not say how far a step could go. So the step's compiled HLO is read for
every dot it runs (fused ones included), with its operand shapes and dimension numbers; each
distinct dot is compiled on its own, in a loop that runs it as many times as the step does,
and all of them together are timed in turns with the step and the ceiling matmul. Alone, each
dot has the whole machine, so their total is about the least time the step's matmuls need (the
step can only beat it by overlapping independent dots better than XLA threads one), and the
utilisation the step would reach at that floor (`mfu_bound`) about the most that rewriting the
step's other operations could give with the same matmuls. Convolutions are not counted, and a
dot inside a loop of the step (`scan_layers`, micro-batches) counts once; both only lower the
floor: where the counted dots are a small share of a step's FLOPs (a conv stem), the bound says
little and can pass 100%.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import re

import jax
import jax.numpy as jnp
from jax import lax

from experiments.benchmarks.timing import interleaved_medians, matmul, xla_flops
from experiments.benchmarks.train_steps import CEILING, StepSetup

# HLO element type -> dtype, for the types dots take.
_DTYPES = {
    "f64": jnp.float64,
    "f32": jnp.float32,
    "bf16": jnp.bfloat16,
    "f16": jnp.float16,
    "s32": jnp.int32,
    "s8": jnp.int8,
}
# `%name = f32[8,64]{1,0} op(` : an instruction's name, element type and dimensions.
_DEFINITION = re.compile(r"%([\w.\-]+) = (\w+)\[([\d,]*)\]")
# `dot(%a, %b)`, or with the operand shapes printed: `dot(f32[8,64]{1,0} %a, ...)`.
_DOT = re.compile(r"= \w+\[[\d,]*\]\S* dot\((?:\S+ )?%([\w.\-]+), (?:\S+ )?%([\w.\-]+)\)")


@dataclasses.dataclass(frozen=True)
class Dot:
    """One dot of an HLO program: operand shapes, element types and dimension numbers."""

    lhs: tuple[int, ...]
    rhs: tuple[int, ...]
    lhs_type: str
    rhs_type: str
    lhs_contracting: tuple[int, ...]
    rhs_contracting: tuple[int, ...]
    lhs_batch: tuple[int, ...]
    rhs_batch: tuple[int, ...]

    @property
    def flops(self) -> int:
        """2 x the multiply-adds: each lhs element meets each free rhs element once."""
        rhs_free = [
            d for i, d in enumerate(self.rhs) if i not in self.rhs_contracting + self.rhs_batch
        ]
        return 2 * math.prod(self.lhs) * math.prod(rhs_free)


def _dims(line: str, name: str) -> tuple[int, ...]:
    match = re.search(name + r"=\{([\d,]*)\}", line)
    return tuple(int(d) for d in match.group(1).split(",") if d) if match else ()


def dots(hlo_text: str) -> collections.Counter[Dot]:
    """The dots of an HLO module's text (`compiled.as_text()`), each with how often it occurs."""
    shapes = {
        m.group(1): (m.group(2), tuple(int(d) for d in m.group(3).split(",") if d))
        for m in _DEFINITION.finditer(hlo_text)
    }
    found = collections.Counter()
    for line in hlo_text.splitlines():
        if not (match := _DOT.search(line)):
            continue
        (lhs_type, lhs), (rhs_type, rhs) = shapes[match.group(1)], shapes[match.group(2)]
        found[
            Dot(
                lhs,
                rhs,
                lhs_type,
                rhs_type,
                _dims(line, "lhs_contracting_dims"),
                _dims(line, "rhs_contracting_dims"),
                _dims(line, "lhs_batch_dims"),
                _dims(line, "rhs_batch_dims"),
            )
        ] += 1
    return found


def repeated(dot: Dot, times: int) -> tuple[jax.stages.Compiled, tuple[jax.Array, jax.Array]]:
    """A compiled program that runs `dot` `times` times in an XLA loop, and its operands (ones).

    The loop carries the lhs through an optimisation barrier together with the last product,
    so each dot waits for the one before and XLA can neither hoist it out of the loop nor drop
    repetitions. The program returns the last product.
    """
    if unknown := {dot.lhs_type, dot.rhs_type} - set(_DTYPES):
        raise ValueError(f"cannot time a dot of element type {sorted(unknown)}: {dot}")
    lhs = jnp.ones(dot.lhs, _DTYPES[dot.lhs_type])
    rhs = jnp.ones(dot.rhs, _DTYPES[dot.rhs_type])
    numbers = ((dot.lhs_contracting, dot.rhs_contracting), (dot.lhs_batch, dot.rhs_batch))

    def loop(lhs, rhs):
        def body(_, carry):
            operand, _ = lax.optimization_barrier(carry)
            return operand, lax.dot_general(operand, rhs, numbers)

        first = lax.dot_general(lhs, rhs, numbers)
        return lax.fori_loop(1, times, body, (lhs, first))[1]

    return jax.jit(loop).lower(lhs, rhs).compile(), (lhs, rhs)


def measure(bench: StepSetup, reps: int, steps: int, repeats: int = 4) -> dict:
    """One `matmul_floor` line for `bench`.

    The step's dots, `repeats` times over (each distinct dot alone, waited for before the
    next), `steps` train steps, and the ceiling matmul are timed in turns, `reps` times.
    """
    counts = dots(bench.train_step.as_text())
    if not counts:
        raise ValueError(f"the {bench.name} train step's HLO has no dot to time")
    loops = [repeated(dot, count * repeats) for dot, count in counts.items()]

    def all_dots():
        for program, operands in loops:
            program(*operands).block_until_ready()

    ceiling, ceiling_flops = matmul(*CEILING)
    seconds = interleaved_medians(
        {"dots": all_dots, "step": lambda: bench.run(steps), "ceiling": ceiling}, reps
    )
    floor_s = seconds["dots"] / repeats
    step_s = seconds["step"] / steps
    ceiling_flops_per_s = ceiling_flops / seconds["ceiling"]
    dot_flops = sum(dot.flops * count for dot, count in counts.items())
    step_flops = xla_flops(bench.train_step)
    return {
        "section": "matmul_floor",
        "task": bench.name,
        "dots": sum(counts.values()),
        "distinct_dots": len(counts),
        "dot_share_of_flops": dot_flops / step_flops,
        "floor_ms": 1e3 * floor_s,
        "step_ms": 1e3 * step_s,
        "floor_share_of_step": floor_s / step_s,
        "dot_gflops_per_s": dot_flops / floor_s / 1e9,
        "ceiling_gflops_per_s": ceiling_flops_per_s / 1e9,
        "mfu": step_flops / step_s / ceiling_flops_per_s,
        "mfu_bound": step_flops / floor_s / ceiling_flops_per_s,
    }
