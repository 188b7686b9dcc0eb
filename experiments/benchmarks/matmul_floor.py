"""The least time a train step's matmuls need on this machine: its dots and convolutions, alone.

Utilisation alone does not say how far a step could go. So the step's compiled HLO is read for
every dot and convolution it runs (fused ones included), with operand shapes and dimension
numbers; each distinct one is compiled on its own, in a loop that runs it as many times as the
step does, and all of them together are timed in turns with the step and the ceiling matmul.
Alone, each has the whole machine, so their total is about the least time the step's products
need (the step can only beat it by overlapping independent ones better than XLA threads one),
and the utilisation the step would reach at that floor (`mfu_bound`) about the most that
rewriting the step's other operations could give with the same matmuls. A product inside a
loop of the step (`scan_layers`, micro-batches) counts once, which only lowers the floor.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import re
from concurrent.futures import ThreadPoolExecutor

import jax
import jax.numpy as jnp
from jax import lax

from experiments.benchmarks.timing import interleaved_medians, matmul, xla_flops
from experiments.benchmarks.train_steps import CEILING, StepSetup

# HLO element type -> dtype, for the types dots and convolutions take.
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
# `= f32[8,64]{1,0} dot(%a, %b)`, or with the operand shapes printed: `dot(f32[8,64]{1,0} %a, ...`.
_PRODUCT = re.compile(
    r"= \w+\[([\d,]*)\]\S* (dot|convolution)\((?:\S+ )?%([\w.\-]+), (?:\S+ )?%([\w.\-]+)\)"
)


@dataclasses.dataclass(frozen=True)
class Product:
    """One dot or convolution of an HLO program, as `lax` would be called to compute it.

    Attributes:
      kind: "dot" or "convolution".
      lhs, rhs: the operands' shapes.
      lhs_type, rhs_type: their HLO element types ("f32", "bf16", ...).
      output: the result's shape.
      arguments: for a dot, `lax.dot_general`'s dimension numbers; for a convolution,
        `lax.conv_general_dilated`'s arguments after the operands, as (name, value) pairs.
    """

    kind: str
    lhs: tuple[int, ...]
    rhs: tuple[int, ...]
    lhs_type: str
    rhs_type: str
    output: tuple[int, ...]
    arguments: tuple

    def operands(self) -> tuple[jax.ShapeDtypeStruct, jax.ShapeDtypeStruct]:
        """The lhs and rhs as shapes and dtypes.

        Raises:
          ValueError naming an element type this module cannot make arrays of.
        """
        if unknown := {self.lhs_type, self.rhs_type} - set(_DTYPES):
            raise ValueError(f"cannot time a product of element type {sorted(unknown)}: {self}")
        return (
            jax.ShapeDtypeStruct(self.lhs, _DTYPES[self.lhs_type]),
            jax.ShapeDtypeStruct(self.rhs, _DTYPES[self.rhs_type]),
        )

    def apply(self, lhs: jax.Array, rhs: jax.Array) -> jax.Array:
        """The product of lhs [*self.lhs] and rhs [*self.rhs], as computed there: [*self.output]."""
        if self.kind == "dot":
            return lax.dot_general(lhs, rhs, self.arguments)
        return lax.conv_general_dilated(lhs, rhs, **dict(self.arguments))

    @property
    def flops(self) -> float:
        """FLOPs of one product as XLA counts them.

        2 m n k for a dot; for a convolution, 2 per multiply-add of a kernel tap that lands on
        the input (not on padding, nor on the holes of a dilated input).
        """
        return xla_flops(jax.jit(self.apply).lower(*self.operands()))


def _ints(text: str) -> tuple[int, ...]:
    """The integers of an HLO dimension list: '8,64' -> (8, 64), '' -> ()."""
    return tuple(int(d) for d in text.split(",") if d)


def _dims(line: str, name: str) -> tuple[int, ...]:
    match = re.search(name + r"=\{([\d,]*)\}", line)
    return _ints(match.group(1)) if match else ()


def _window(line: str, field: str, spatial: int, default) -> tuple:
    match = re.search(rf"window=\{{[^}}]*\b{field}=([\dx_]+)", line)
    if not match:
        return (default,) * spatial
    return tuple(
        tuple(int(x) for x in part.split("_")) if "_" in part else int(part)
        for part in match.group(1).split("x")
    )


def _convolution_arguments(line: str, spatial: int) -> tuple:
    """`lax.conv_general_dilated`'s arguments from an HLO convolution's attributes."""
    labels = re.search(r"dim_labels=(\w+)_(\w+)->(\w+)", line).groups()
    # HLO names spatial dimensions 0, 1, ...; lax's string form wants letters, matched by name.
    letters = str.maketrans({"b": "N", "f": "C", "i": "I", "o": "O", **dict(zip("0123", "HWDT"))})
    groups = {
        name: int(m.group(1)) if (m := re.search(name + r"=(\d+)", line)) else 1
        for name in ("feature_group_count", "batch_group_count")
    }
    return (
        ("window_strides", _window(line, "stride", spatial, 1)),
        ("padding", _window(line, "pad", spatial, (0, 0))),
        ("lhs_dilation", _window(line, "lhs_dilate", spatial, 1)),
        ("rhs_dilation", _window(line, "rhs_dilate", spatial, 1)),
        ("dimension_numbers", tuple(label.translate(letters) for label in labels)),
        *groups.items(),
    )


def products(hlo_text: str) -> collections.Counter[Product]:
    """The dots and convolutions of an HLO module's text (`compiled.as_text()`), with counts."""
    shapes = {m.group(1): (m.group(2), _ints(m.group(3))) for m in _DEFINITION.finditer(hlo_text)}
    found = collections.Counter()
    for line in hlo_text.splitlines():
        if not (match := _PRODUCT.search(line)):
            continue
        output = _ints(match.group(1))
        kind = match.group(2)
        (lhs_type, lhs), (rhs_type, rhs) = shapes[match.group(3)], shapes[match.group(4)]
        if kind == "dot":
            arguments = (
                (_dims(line, "lhs_contracting_dims"), _dims(line, "rhs_contracting_dims")),
                (_dims(line, "lhs_batch_dims"), _dims(line, "rhs_batch_dims")),
            )
        else:
            arguments = _convolution_arguments(line, len(lhs) - 2)
        found[Product(kind, lhs, rhs, lhs_type, rhs_type, output, arguments)] += 1
    return found


def repeated(
    product: Product, times: int
) -> tuple[jax.stages.Compiled, tuple[jax.Array, jax.Array]]:
    """A compiled program that runs `product` `times` times in an XLA loop, and its operands.

    The loop carries the lhs through an optimisation barrier together with the last result,
    so each product waits for the one before and XLA can neither hoist it out of the loop nor
    drop repetitions. The operands are ones; the program returns the last result.
    """
    lhs, rhs = (jnp.ones(spec.shape, spec.dtype) for spec in product.operands())

    def loop(lhs, rhs):
        def body(_, carry):
            operand, _ = lax.optimization_barrier(carry)
            return operand, product.apply(operand, rhs)

        return lax.fori_loop(1, times, body, (lhs, product.apply(lhs, rhs)))[1]

    return jax.jit(loop).lower(lhs, rhs).compile(), (lhs, rhs)


def measure(bench: StepSetup, reps: int, steps: int, repeats: int = 4) -> dict:
    """One `matmul_floor` line for `bench`.

    The step's dots and convolutions, `repeats` times over (each distinct one alone, waited
    for before the next), `steps` train steps, and the ceiling matmul are timed in turns, `reps`
    times.
    """
    counts = products(bench.train_step.as_text())
    if not counts:
        raise ValueError(f"the {bench.name} train step's HLO has no dot or convolution to time")
    # One compilation per distinct product: XLA compiles them side by side on all cores.
    with ThreadPoolExecutor(os.cpu_count()) as pool:
        loops = list(pool.map(lambda item: repeated(item[0], item[1] * repeats), counts.items()))

    def all_products():
        for program, operands in loops:
            program(*operands).block_until_ready()

    ceiling, ceiling_flops = matmul(*CEILING)
    seconds = interleaved_medians(
        {"products": all_products, "step": lambda: bench.run(steps), "ceiling": ceiling}, reps
    )
    floor_s = seconds["products"] / repeats
    step_s = seconds["step"] / steps
    ceiling_flops_per_s = ceiling_flops / seconds["ceiling"]
    product_flops = sum(product.flops * count for product, count in counts.items())
    step_flops = xla_flops(bench.train_step)
    return {
        "section": "matmul_floor",
        "task": bench.name,
        "products": sum(counts.values()),
        "distinct": len(counts),
        "share_of_flops": product_flops / step_flops,
        "floor_ms": 1e3 * floor_s,
        "step_ms": 1e3 * step_s,
        "floor_share_of_step": floor_s / step_s,
        "products_gflops_per_s": product_flops / floor_s / 1e9,
        "ceiling_gflops_per_s": ceiling_flops_per_s / 1e9,
        "mfu": step_flops / step_s / ceiling_flops_per_s,
        "mfu_bound": step_flops / floor_s / ceiling_flops_per_s,
        "share_of_bound": floor_s / step_s,  # the step's utilisation over the bound's
    }
