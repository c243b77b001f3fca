"""The flowers tutorial (tensorflow.org/tutorials/images/transfer_learning) in edgetl's Python API: transfer learning
on MobileNetV2, an int8 TFLite file verified against Keras, and that file classifying photos.

    python examples/flowers.py ~/.keras/datasets/flower_photos   # the tutorial's folder: one subfolder per class
    python examples/flowers.py                                   # no dataset: edgetl's sample digits, no download

Run it as a script, or cell by cell (`# %%`) in a notebook.
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

import edgetl

# The tutorial's model: MobileNetV2 pretrained on ImageNet at 160 px, a new head on the frozen backbone with
# augmentation, then the top of the backbone fine-tuned.
TUTORIAL = {"image_size": 160, "weights": "imagenet", "epochs": 10, "fine_tune_epochs": 10, "augment": True}
# The sample digits, as `make demo` trains them: no ImageNet weights to download, a small network from scratch.
SAMPLE = {"alpha": 0.35, "image_size": 48, "weights": "none", "epochs": 40, "patience": 8}
IMAGES_SHOWN = 5


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", type=Path, help="class folders (default: write the sample digits)")
    parser.add_argument("--out", type=Path, default=Path("flowers-out"), help="where the data, run and files go")
    parser.add_argument("--set", nargs="*", default=[], metavar="OPTION=VALUE", help="a training option, epochs=3")
    parser.add_argument("--min-agreement", type=float, help="the exports' gate (default: each format's own)")
    args = parser.parse_args(argv)
    training = TUTORIAL if args.data else SAMPLE
    training = training | {key: _value(value) for key, value in (item.split("=", 1) for item in args.set)}

    # %% The data: a folder with one subfolder of photos per class.
    data = args.data or args.out / "digits"
    if args.data is None and not data.exists():
        edgetl.sample_data(data)

    # %% Train: edgetl splits the folder (train/validation/test), trains, evaluates and writes the run directory.
    trained = edgetl.train(data, args.out / "run", backbone="mobilenetv2", overwrite=True, **training)
    print(f"trained on {len(trained.class_names)} classes: test accuracy {trained.test_accuracy:.3f}")

    # %% Export: float32 and int8 TFLite files, each verified against the Keras model on the test images.
    exported = edgetl.export(trained.run.path, formats="tflite-float32,tflite-int8", min_agreement=args.min_agreement)
    for record in exported.records:
        print(f"{record.path}: {record.size_bytes / 1e6:.2f} MB, top-1 agreement with Keras {record.agreement:.3f}")
    for problem in exported.problems:
        print(f"warning: {problem}")

    # %% Classify photos with the int8 file, as a board would (no TensorFlow needed for this part).
    classifier = edgetl.Classifier(exported.root / exported.records[-1].path)
    photos = [sorted(folder.iterdir())[0] for folder in sorted(Path(data).iterdir()) if folder.is_dir()]
    for result in classifier.classify(photos[:IMAGES_SHOWN]):
        print(f"{result.file}: {result.label} ({result.top[0][1]:.2f})")


def _value(text: str):
    """A number or a boolean as Python writes it; anything else (none, imagenet) as the text."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


if __name__ == "__main__":
    main()
