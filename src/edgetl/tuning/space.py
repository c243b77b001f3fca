"""The search space: every (backbone, width, input size, head) the registries offer, narrowed by `--space`.

`--space` is `key=value,value;key=value`, keys from SPACE_KEYS: `backbone=mobilenetv2;alpha=0.35,0.5;size=96,128`.
A key left out keeps all its registry choices (sizes: DEFAULT_IMAGE_SIZES). Imports nothing heavy.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgetl.errors import UsageError
from edgetl.models.backbones import BACKBONES, BackboneSpec
from edgetl.models.classifier import HeadConfig

# Input sizes searched when `--space` names none: the sizes small boards run classifiers at, each kept only for the
# backbones whose minimum it meets.
DEFAULT_IMAGE_SIZES = (96, 128, 160, 224)
# The head options searched when `--space` names none: the head `edgetl train` builds by default.
DEFAULT_HIDDEN_UNITS = (HeadConfig.hidden_units,)
SPACE_KEYS = {
    "backbone": "backbone names",
    "alpha": "width multipliers",
    "size": "input sizes in pixels",
    "hidden": "hidden units of the head (0: none)",
}


class SpaceError(UsageError):
    """`--space` is malformed or names something the registries do not offer."""


@dataclass(frozen=True, order=True)
class Candidate:
    """One architecture to try; its weights do not matter for its latency and size."""

    backbone: str
    alpha: float | None
    image_size: int
    hidden_units: int = HeadConfig.hidden_units

    @property
    def name(self) -> str:
        """A short unique name, also the folder of its runs: mobilenetv2-0.35-96px (a head adds -h128)."""
        width = f"-{self.alpha:g}" if self.alpha is not None else ""
        head = f"-h{self.hidden_units}" if self.hidden_units else ""
        return f"{self.backbone}{width}-{self.image_size}px{head}"

    @property
    def train_options(self) -> dict:
        """The `edgetl.train` options that build this architecture."""
        return {
            "backbone": self.backbone,
            "alpha": self.alpha,
            "image_size": self.image_size,
            "hidden_units": self.hidden_units,
        }


@dataclass(frozen=True)
class SearchSpace:
    backbones: tuple[str, ...]
    alphas: tuple[float, ...] | None  # None: every width each backbone offers
    image_sizes: tuple[int, ...]
    hidden_units: tuple[int, ...]

    def candidates(self) -> list[Candidate]:
        """Every combination the registries allow: a size below a backbone's minimum, or a width it does not offer,
        is left out for that backbone only."""
        found = []
        for name in self.backbones:
            spec = BACKBONES[name]
            for alpha in widths(spec, self.alphas):
                for size in self.image_sizes:
                    if size < spec.min_size:
                        continue
                    for hidden in self.hidden_units:
                        found.append(Candidate(name, alpha, size, hidden))
        return found

    def to_text(self) -> str:
        """The `--space` text that gives this space back."""
        parts = [f"backbone={','.join(self.backbones)}"]
        if self.alphas is not None:
            parts.append(f"alpha={','.join(f'{a:g}' for a in self.alphas)}")
        parts.append(f"size={','.join(map(str, self.image_sizes))}")
        parts.append(f"hidden={','.join(map(str, self.hidden_units))}")
        return ";".join(parts)


def widths(spec: BackboneSpec, alphas: tuple[float, ...] | None) -> list[float | None]:
    """The widths of `spec` to try: those of `alphas` it offers, or all it offers; None for a family without."""
    if not spec.alphas:
        return [None]
    return [alpha for alpha in spec.alphas if alphas is None or alpha in alphas]


def _numbers(key: str, values: list[str], kind: type) -> tuple:
    parsed = []
    for value in values:
        try:
            number = kind(value)
        except ValueError:
            raise SpaceError(f"--space {key}={value}: not a number ({SPACE_KEYS[key]})") from None
        if number < 0 or (key == "size" and number == 0):
            raise SpaceError(f"--space {key}={value}: must be positive")
        parsed.append(number)
    return tuple(dict.fromkeys(parsed))


def parse_space(text: str | None) -> SearchSpace:
    """The space `--space TEXT` describes; None or "" is the whole registry at DEFAULT_IMAGE_SIZES."""
    given: dict[str, list[str]] = {}
    for part in (text or "").replace(" ", "").split(";"):
        if not part:
            continue
        key, equals, values = part.partition("=")
        key = key.lower()
        if key not in SPACE_KEYS:
            raise SpaceError(
                f"--space: unknown key {key!r}; the keys are {', '.join(SPACE_KEYS)} "
                f"(e.g. backbone=mobilenetv2;size=96)"
            )
        listed = [value for value in values.split(",") if value]
        if not equals or not listed:
            raise SpaceError(f"--space {part}: expected {key}=VALUE[,VALUE...]")
        if key in given:
            raise SpaceError(f"--space: {key} is given twice")
        given[key] = listed
    backbones = tuple(dict.fromkeys(name.lower() for name in given.get("backbone", BACKBONES)))
    unknown = [name for name in backbones if name not in BACKBONES]
    if unknown:
        raise SpaceError(f"--space backbone={unknown[0]}: unknown backbone; choose from {', '.join(BACKBONES)}")
    alphas = _numbers("alpha", given["alpha"], float) if "alpha" in given else None
    if alphas is not None:
        offered = sorted({a for name in backbones for a in BACKBONES[name].alphas})
        if not offered:
            raise SpaceError(f"--space alpha: none of {', '.join(backbones)} has a width multiplier (omit alpha)")
        missing = [a for a in alphas if a not in offered]
        if missing:
            choices = ", ".join(f"{a:g}" for a in offered)
            raise SpaceError(
                f"--space alpha={missing[0]:g}: not offered by {', '.join(backbones)}; choose from {choices}"
            )
    sizes = _numbers("size", given["size"], int) if "size" in given else DEFAULT_IMAGE_SIZES
    hidden = _numbers("hidden", given["hidden"], int) if "hidden" in given else DEFAULT_HIDDEN_UNITS
    space = SearchSpace(backbones, alphas, tuple(sizes), tuple(hidden))
    if not space.candidates():
        smallest = min(BACKBONES[name].min_size for name in backbones)
        raise SpaceError(
            f"--space: no candidate: sizes {', '.join(map(str, sizes))} are all below the minimum input size of "
            f"{', '.join(backbones)} (at least {smallest} px)"
        )
    return space
