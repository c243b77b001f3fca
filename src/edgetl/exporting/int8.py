"""Accuracy-aware int8: recipes are tried in order until a file reaches its agreement gate.

The ladder climbs from the cheapest recipe to the costliest: the requested calibration sample with bias
correction (exporting/bias_correction.py), the same without it, more calibration images, then other calibration
methods where the quantiser has them (all integer-only), and finally, when float islands are allowed
(`--int8-fallback float`), the most sensitive layers kept in float, a few more at each rung. Where float islands
are allowed, a file that passes its gate but flips too many of the images Keras is confident about does not end
the climb either. Every attempt is recorded; the first that passes (and, with float islands, reaches the confident
target) is kept, or, when none does, the one closest to Keras among those that pass, else among all.

An attempt whose outcome is decided before every verification image is run stops there (`cannot_matter`): it
flips more images than its gate allows, or more of the images Keras is confident about than the confident target
allows, whatever the images left give, and (for the integer-only rungs float islands start from, the best of them)
it can no longer agree with Keras more than the best of them so far. Its figures are then those of the images run,
and `Attempt.images` says how many. When no attempt settles, every attempt stopped early is run to the end before
the closest is chosen.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from edgetl.runtime.cpu import X86_AVX2

if TYPE_CHECKING:  # the CLI reads INT8_FALLBACKS from here, so nothing heavier is imported
    from edgetl.exporting.verify import Fidelity

log = logging.getLogger(__name__)

INT8_FALLBACKS = ("float", "none")  # float islands allowed, or integer-only (NPUs, Edge TPU)
# Input/output types an int8 TFLite file can have; who can write which is in exporting/formats.py's QUANTIZERS.
IO_TYPES = ("uint8", "int8", "float32")
# Percentile calibration (TFLite and ONNX alike) keeps each activation's range to the values all but this share
# of the calibration activations lie within: the rarest extremes saturate, the common values get finer steps.
CALIBRATION_PERCENTILE = 99.99
# With float islands allowed, the share of the images Keras is confident about (verify.CONFIDENT_PROBABILITY) an int8
# file must agree on before the ladder stops: flips where Keras is sure are the errors users see, and one or two
# float layers often remove them when integer-only recipes cannot. It steers the climb; the gate stays the verdict.
CONFIDENT_AGREEMENT_TARGET = 0.99


# The largest magnitude of a symmetric int8 weight.
INT8_WEIGHT_MAX = 127


@dataclass(frozen=True)
class OnnxInt8Target:
    """Which CPUs an int8 ONNX file is made for. onnxruntime's x86-64 kernels without VNNI multiply uint8
    activations by int8 weights and add pairs of products in 16 bits, which saturates once a pair exceeds 32767
    (255 x 127 x 2 does). Pair-limited weights (exporting/weight_scales.py) never do. Depthwise convolutions have
    kernels of their own that add in 32 bits, so they keep the usual scales everywhere."""

    description: str
    pair_limited_weights: bool  # in every weighted layer but depthwise convolutions
    saturates_on: tuple[str, ...] = ()  # CPU classes (runtime/cpu.py) where onnxruntime's results differ


ONNX_INT8_TARGETS = {
    "portable": OnnxInt8Target(
        "the same results on every CPU (no two weights of a channel exceed 128 together, outside depthwise layers)",
        True,
    ),
    "vnni-arm64": OnnxInt8Target(
        "full 8-bit weights, for x86-64 with VNNI and arm64; saturates on x86-64 AVX2 without VNNI", False, (X86_AVX2,)
    ),
}
# How many of the most sensitive layers are kept in float at each fallback rung.
FLOAT_LAYER_STEPS = (1, 2, 4, 8, 16)
# More calibration images are tried as one rung: this many times the requested sample, as far as the pool allows.
MORE_CALIBRATION_FACTOR = 3


@dataclass(frozen=True)
class Int8Recipe:
    calibration_images: int
    method: str  # calibration method, as the quantiser names it
    bias_correction: bool = True
    float_layers: tuple[str, ...] = ()  # layers (TFLite tensors, ONNX nodes) kept in float

    @property
    def name(self) -> str:
        name = f"{self.method}-{self.calibration_images}" + ("+bias" if self.bias_correction else "")
        return name + (f"+float{len(self.float_layers)}" if self.float_layers else "")


@dataclass(frozen=True)
class Attempt:
    """One recipe tried: what it was, how close the file came to Keras, what it cost."""

    recipe: str
    method: str
    calibration_images: int
    bias_correction: bool
    float_layers: list[str]
    agreement: float
    confident_agreement: float | None
    mean_probability_diff: float
    size_bytes: int
    passed: bool | None  # None: stopped before the end, once the rest could not matter (cannot_matter)
    seconds: float
    images: int = 0  # verification images run: fewer than the export's when the outcome was decided before the end


@dataclass
class Trial:
    """What trying a recipe gave: the fidelity, whether the file passed, and whatever the caller needs to keep
    it (the converted model). `finish`, where the attempt stopped before the end (`cannot_matter`), runs the rest
    of the images and gives the whole trial."""

    fidelity: Fidelity
    passed: bool
    size_bytes: int
    kept: object = None
    finish: Callable[[], Trial] | None = None


@dataclass
class LadderResult:
    chosen: Trial
    recipe: Int8Recipe
    attempts: list[Attempt] = field(default_factory=list)


def most_calibration_images(samples: int, pool_size: int) -> int:
    """The most images a rung calibrates on: the larger sample, as far as the pool allows."""
    return max(min(samples, pool_size), min(pool_size, samples * MORE_CALIBRATION_FACTOR))


def integer_rungs(samples: int, pool_size: int, methods: Sequence[str]) -> list[Int8Recipe]:
    """The integer-only rungs: the first method on the requested sample with bias correction and without, on a
    larger sample, then each other method on the larger sample (which calibrates once for every method)."""
    first = min(samples, pool_size)
    more = most_calibration_images(samples, pool_size)
    rungs = [Int8Recipe(first, methods[0]), Int8Recipe(first, methods[0], bias_correction=False)]
    if more > first:
        rungs.append(Int8Recipe(more, methods[0]))
    rungs += [Int8Recipe(more, method) for method in methods[1:]]
    return rungs


def settled(trial: Trial, confident_target: float | None) -> bool:
    """Passed, and (when a confident target is set and there are confident images) reached it."""
    confident = trial.fidelity.confident_agreement
    return trial.passed and (confident_target is None or confident is None or confident >= confident_target)


def cannot_settle(
    flips: int, images: int, confident_flips: int, confident_images: int, gate: float, confident_target: float | None
) -> bool:
    """Whether an attempt that flipped `flips` of `images` verification images so far, `confident_flips` of the
    `confident_images` Keras is confident about, can no longer settle whatever the images left give: counting all
    of them as agreeing, its agreement is below `gate`, or its confident agreement below `confident_target`. The
    shares are computed as `verify.compare` computes them (count over images), so this is the verdict the whole
    verification would give."""
    if (images - flips) / images < gate:
        return True
    if confident_target is None or confident_images == 0:
        return False
    return (confident_images - confident_flips) / confident_images < confident_target


def cannot_matter(
    flips: int,
    images: int,
    confident_flips: int,
    confident_images: int,
    gate: float,
    confident_target: float | None,
    rival: float | None,
) -> bool:
    """Whether the rest of an attempt's images can be left unrun: it cannot settle (`cannot_settle`), and, with a
    `rival` (the agreement of the best attempt so far, where the best is still to be chosen), it cannot agree with
    Keras more than that even if every image left agrees, so it cannot be the best either (`_better`: passing
    follows agreement, and a tie keeps the earlier)."""
    if not cannot_settle(flips, images, confident_flips, confident_images, gate, confident_target):
        return False
    return rival is None or (images - flips) / images <= rival


def _better(candidate: Trial, best: Trial | None, confident_target: float | None) -> bool:
    """A settled file beats one that only passes, which beats a failing one; then the one agreeing more."""
    if best is None:
        return True

    def key(trial: Trial) -> tuple:
        return settled(trial, confident_target), trial.passed, trial.fidelity.agreement

    return key(candidate) > key(best)


def climb(
    rungs: list[Int8Recipe],
    attempt: Callable[[Int8Recipe, float | None], Trial],
    rank_layers: Callable[[Int8Recipe], list[str]] | None,
    confident_target: float | None = None,
) -> LadderResult:
    """Try `rungs` in order, then (with `rank_layers`, which orders layers most sensitive first for a recipe)
    the best integer recipe with more and more layers in float; stop at the first file that passes and, with
    `confident_target`, agrees with Keras on at least that share of its confident images.

    `attempt(recipe, rival)` makes and verifies a file; it may stop verifying once the rest cannot matter
    (`cannot_matter` with `rival`), and then gives a Trial with `finish`. Where float islands follow, the best
    integer rung is their start: an integer rung gets the agreement of the best so far as its rival (-inf for the
    first, which runs whole), so the best is always run whole; float islands and integer-only ladders get None.

    Float islands start from the best recipe as it is, bias correction included: the exporter leaves the layers
    kept in float out of the correction (a correction for int8 rounding is an error on a float layer)."""
    attempts: list[Attempt] = []
    tried: list[tuple[Trial, Int8Recipe]] = []

    def record(trial: Trial, recipe: Int8Recipe, seconds: float) -> Attempt:
        fidelity = trial.fidelity
        return Attempt(
            recipe=recipe.name,
            method=recipe.method,
            calibration_images=recipe.calibration_images,
            bias_correction=recipe.bias_correction,
            float_layers=list(recipe.float_layers),
            agreement=fidelity.agreement,
            confident_agreement=fidelity.confident_agreement,
            mean_probability_diff=round(fidelity.mean_probability_diff, 6),
            size_bytes=trial.size_bytes,
            passed=None if trial.finish is not None else trial.passed,
            seconds=round(seconds, 2),
            images=fidelity.images,
        )

    def run(recipe: Int8Recipe, rival: float | None) -> Trial:
        started = time.perf_counter()
        trial = attempt(recipe, rival)
        attempts.append(record(trial, recipe, time.perf_counter() - started))
        tried.append((trial, recipe))
        fidelity = trial.fidelity
        verdict = "passed" if trial.passed else "failed"
        if trial.finish is not None:
            verdict = f"cannot settle after {fidelity.images} image(s)"
        log.info("int8 recipe %s: agreement %.4f, %s", recipe.name, fidelity.agreement, verdict)
        return trial

    def best() -> tuple[Trial, Int8Recipe]:
        chosen: tuple[Trial, Int8Recipe] | None = None
        for trial, recipe in tried:
            if _better(trial, chosen[0] if chosen else None, confident_target):
                chosen = (trial, recipe)
        return chosen

    def result() -> LadderResult:
        for position, (trial, recipe) in enumerate(tried):
            if trial.finish is not None:  # none settled: the closest is chosen over every image
                started = time.perf_counter()
                whole = trial.finish()
                seconds = attempts[position].seconds + time.perf_counter() - started
                tried[position] = (whole, recipe)
                attempts[position] = record(whole, recipe, seconds)
        return LadderResult(*best(), attempts)

    def rival() -> float | None:
        if rank_layers is None:
            return None
        return best()[0].fidelity.agreement if tried else -math.inf

    for recipe in rungs:
        if settled(run(recipe, rival()), confident_target):
            return LadderResult(*best(), attempts)
    base = best()[1]
    ranked = rank_layers(base) if rank_layers is not None else []
    for count in sorted({min(count, len(ranked)) for count in FLOAT_LAYER_STEPS if ranked}):
        if settled(run(replace(base, float_layers=tuple(ranked[:count])), None), confident_target):
            return LadderResult(*best(), attempts)
    return result()
