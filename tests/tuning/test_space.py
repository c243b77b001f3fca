"""--space parsing and the candidates the registries give."""

from __future__ import annotations

import pytest

from edgetl.models.backbones import BACKBONES
from edgetl.tuning.space import DEFAULT_IMAGE_SIZES, Candidate, SpaceError, parse_space


def test_no_space_is_every_backbone_and_width_of_the_registry():
    candidates = parse_space(None).candidates()
    assert {c.backbone for c in candidates} == set(BACKBONES)
    widths = {c.alpha for c in candidates if c.backbone == "mobilenetv2"}
    assert widths == set(BACKBONES["mobilenetv2"].alphas)
    assert {c.alpha for c in candidates if c.backbone == "efficientnetb0"} == {None}
    # Sizes below a backbone's minimum are left out for it alone.
    assert {c.image_size for c in candidates if c.backbone == "xception"} == {
        s for s in DEFAULT_IMAGE_SIZES if s >= BACKBONES["xception"].min_size
    }


def test_a_space_narrows_each_key():
    space = parse_space("backbone=mobilenetv2; alpha=0.35,0.5; size=32,48; hidden=0,64")
    names = [c.name for c in space.candidates()]
    assert len(names) == 8
    assert "mobilenetv2-0.35-32px" in names and "mobilenetv2-0.5-48px-h64" in names
    assert parse_space(space.to_text()) == space


def test_families_without_width_ignore_alpha():
    candidates = parse_space("backbone=mobilenetv2,efficientnetb0;alpha=0.35;size=32").candidates()
    assert candidates == [Candidate("mobilenetv2", 0.35, 32), Candidate("efficientnetb0", None, 32)]
    assert candidates[1].name == "efficientnetb0-32px"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("backbone=resnet9000", "unknown backbone; choose from " + ", ".join(BACKBONES)),
        ("depth=3", "unknown key 'depth'; the keys are backbone, alpha, size, hidden"),
        ("backbone=mobilenetv2;alpha=0.3", "alpha=0.3: not offered by mobilenetv2; choose from 0.35, 0.5"),
        ("backbone=vgg16;alpha=0.5", "none of vgg16 has a width multiplier"),
        ("size=big", "size=big: not a number"),
        ("size=", "expected size=VALUE"),
        ("size=32;size=48", "size is given twice"),
        ("backbone=xception;size=32,48", "below the minimum input size of xception (at least 71 px)"),
    ],
)
def test_bad_spaces_are_one_line_naming_the_problem(text, message):
    with pytest.raises(SpaceError) as error:
        parse_space(text)
    assert message in str(error.value)
    assert "\n" not in str(error.value)
