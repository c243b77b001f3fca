"""Training throughput of `edgetl train`'s stages, measured in one run at a fixed small configuration.

Stage 1 (frozen backbone, head only) with and without feature caching, 5 epochs each, and stage 2 (top of the
backbone unfrozen) for 5 epochs: MobileNetV2 alpha 0.35 at 48 px on the built-in sample digits, batch 32, CPU.
A randomly initialised backbone saved as a local weights file stands in for ImageNet (no network here); the
arithmetic is the same. Images/second counts training images x epochs over the wall time, tracing included;
the cached figure includes computing the features.

    PYTHONPATH=src python benchmarks/train_throughput.py
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ALPHA = 0.35
IMAGE_SIZE = 48
BATCH_SIZE = 32
EPOCHS = 5
FINE_TUNE_LAYERS = 30


def main() -> None:
    import keras

    from edgetl.data.dataset import decode_dataset_subset
    from edgetl.data.layouts import LayoutOptions, read_dataset
    from edgetl.data.pipeline import to_dataset
    from edgetl.data.sample import write_sample_data
    from edgetl.models.backbones import get_backbone
    from edgetl.models.classifier import HeadConfig, build_backbone, build_classifier
    from edgetl.models.finetune import unfreeze_top
    from edgetl.train.features import backbone_features, features_dataset, head_model

    spec = get_backbone("mobilenetv2")
    with tempfile.TemporaryDirectory() as scratch:
        data = Path(scratch) / "digits"
        write_sample_data(data)
        dataset = read_dataset(str(data), "folder", LayoutOptions(seed=1))
        train = decode_dataset_subset(dataset, "train", IMAGE_SIZE)
        weights = Path(scratch) / "backbone.weights.h5"
        keras.utils.set_random_seed(1)
        build_backbone(spec, IMAGE_SIZE, ALPHA, "none").save_weights(weights)

        def fresh_model():
            keras.utils.set_random_seed(1)
            model = build_classifier(spec, len(dataset.class_names), IMAGE_SIZE, ALPHA, str(weights), HeadConfig())
            return model

        def compiled(model, learning_rate):
            model.compile(
                optimizer=keras.optimizers.Adam(learning_rate),
                loss="sparse_categorical_crossentropy",
                metrics=["accuracy"],
            )
            return model

        class EpochTimer(keras.callbacks.Callback):
            """Seconds per epoch, so the one-off costs (tracing, feature extraction) can be told apart."""

            def on_train_begin(self, logs=None):
                self.seconds = []

            def on_epoch_begin(self, epoch, logs=None):
                self.began = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                self.seconds.append(time.perf_counter() - self.began)

        def later_epochs(timer) -> float:
            return sum(timer.seconds[1:]) / max(1, len(timer.seconds) - 1)

        images = len(train.labels) * EPOCHS
        pixels = to_dataset(train, BATCH_SIZE, shuffle_seed=1)

        model = compiled(fresh_model(), 1e-3)
        uncached_timer = EpochTimer()
        started = time.perf_counter()
        model.fit(pixels, epochs=EPOCHS, verbose=0, shuffle=False, callbacks=[uncached_timer])
        uncached = images / (time.perf_counter() - started)

        model = fresh_model()
        started = time.perf_counter()
        (features,) = backbone_features(model, [train], BATCH_SIZE)
        extraction = time.perf_counter() - started
        head = compiled(head_model(model), 1e-3)
        cached_timer = EpochTimer()
        head.fit(
            features_dataset(features, train.labels, BATCH_SIZE, 1),
            epochs=EPOCHS,
            verbose=0,
            shuffle=False,
            callbacks=[cached_timer],
        )
        cached = images / (time.perf_counter() - started)

        unfreeze_top(model, layers=FINE_TUNE_LAYERS)
        compiled(model, 1e-4)
        started = time.perf_counter()
        model.fit(pixels, epochs=EPOCHS, verbose=0, shuffle=False)
        fine_tune = images / (time.perf_counter() - started)

    print(
        f"MobileNetV2 alpha {ALPHA}, {IMAGE_SIZE} px, batch {BATCH_SIZE}, {len(train.labels)} training images, "
        f"{EPOCHS} epochs per figure, {os.cpu_count()} CPU(s)"
    )
    print(f"stage 1 uncached (backbone every epoch):  {uncached:9.1f} images/s")
    print(f"stage 1 cached features (computed once):  {cached:9.1f} images/s")
    print(f"stage 2 (top {FINE_TUNE_LAYERS} backbone layers trained):   {fine_tune:9.1f} images/s")
    print(f"cached / uncached stage 1: {cached / uncached:.1f}x")
    print(
        f"one-off: feature extraction {extraction:.2f} s; epochs after the first: uncached "
        f"{later_epochs(uncached_timer):.3f} s, cached {later_epochs(cached_timer):.3f} s "
        f"({later_epochs(uncached_timer) / later_epochs(cached_timer):.0f}x per epoch)"
    )


if __name__ == "__main__":
    main()
