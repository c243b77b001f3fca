"""Stage 1 on cached features: with the backbone frozen and no augmentation, every epoch would push the same
images through the same backbone. Compute its pooled output once, train the head on it, and the full model has
the trained head, because the head model is made of the full model's own head layers (shared weights)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from edgetl.data.pipeline import (
    DecodedSubset,
    RecordFile,
    StreamedSubset,
    indexed_batches,
    per_worker_options,
    to_dataset,
)
from edgetl.models.classifier import POOL_LAYER_NAME
from edgetl.progress import step

# Inference needs no gradients, so it can take larger batches than training: fewer steps, less per-step overhead.
# But not too large: the first pass touches all of a slice's activation memory for the first time, and beyond a
# point the page faults outweigh the compute. What matters is the activation memory, so a slice holds a fixed
# number of pixels, not of images (the figures behind it are in docs/benchmarks.md, "Training throughput").
EXTRACTION_PIXELS = 256 * 96 * 96
# Weights as graph constants (below) speed up the pass, but every constant is copied as the function is traced
# and first run: small backbones (MobileNetV2, EfficientNetB0) gain more than the copy costs, large ones (VGG16,
# Xception, ResNet50V2) do not. Above this size the backbone runs on its variables.
CONSTANT_WEIGHTS_MAX_BYTES = 32 * 2**20
# A subset's features stay in memory up to this many bytes and are spilled to a file above it. Features are small
# (MobileNetV2's 1,280 floats are 5 KB an image against 150 KB of pixels at 224 px), so the budget holds about
# 200,000 images' worth: training the head reads them every step, and from memory is fastest, while past the
# budget memory would grow with the dataset again.
FEATURE_MEMORY_BYTES = 2**30

Features = np.ndarray | RecordFile


def is_multi_worker(strategy) -> bool:
    import tensorflow as tf

    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def backbone_features(
    model, subsets: list[DecodedSubset | StreamedSubset], batch_size: int, spill_folder: Path | None = None
) -> list[Features]:
    """The pooled backbone output of each subset: an array, or a RecordFile in `spill_folder` when over
    FEATURE_MEMORY_BYTES.

    One tf.function with an open batch dimension serves every subset and the short last batches, so the
    backbone is traced once; the pixels go in by slices, the next slice read while this one is computed. Keras'
    predict would trace again for each new batch shape and feed a tf.data pipeline: on a small dataset that
    overhead is about as long as the pass itself. With several replicas on one machine, predict spreads the
    batches over them; with several machines each worker computes its own shard's features here, alone.
    """
    import keras
    import tensorflow as tf

    extractor = keras.Model(model.inputs, model.get_layer(POOL_LAYER_NAME).output)
    height, width = model.input_shape[1:3]
    chunk = max(batch_size, EXTRACTION_PIXELS // (height * width))
    strategy = model.distribute_strategy
    if strategy.num_replicas_in_sync > 1 and not is_multi_worker(strategy):
        return [np.asarray(extractor.predict(to_dataset(s, chunk), verbose=0), np.float32) for s in subsets]
    feature_shape = tuple(extractor.output_shape[1:])
    total = sum(len(subset.labels) for subset in subsets)
    results: list[Features] = []
    with step("computing backbone features", total=total) as computing, ThreadPoolExecutor(1) as reader:
        extract = inference_function(extractor)
        for number, subset in enumerate(subsets):
            count = len(subset.labels)
            spill = spill_folder is not None and count * int(np.prod(feature_shape)) * 4 > FEATURE_MEMORY_BYTES
            if spill:
                kept: Features = RecordFile(Path(spill_folder) / f"features-{number}.f32", feature_shape, np.float32)
            else:
                kept = np.empty((count, *feature_shape), np.float32)
            starts = range(0, count, chunk)
            pending = reader.submit(subset.read, np.arange(0, min(chunk, count))) if count else None
            for start in starts:
                pixels = pending.result()
                if start + chunk < count:
                    pending = reader.submit(subset.read, np.arange(start + chunk, min(start + 2 * chunk, count)))
                computed = extract(tf.constant(pixels, tf.float32)).numpy().astype(np.float32)
                if spill:
                    kept.append(computed)
                else:
                    kept[start : start + len(computed)] = computed
                computing.advance(len(computed))
            results.append(kept)
    return results


def inference_function(model):
    """`model`'s inference pass, traced once for any batch size; on constant weights when that pays."""
    import tensorflow as tf

    weight_bytes = sum(np.prod(v.shape) * np.dtype(v.dtype).itemsize for v in model.weights)
    if weight_bytes <= CONSTANT_WEIGHTS_MAX_BYTES:
        return inference_with_constant_weights(model)
    signature = [tf.TensorSpec([None, *model.input_shape[1:]], tf.float32)]
    forward = tf.function(lambda pixels: model([pixels], training=False), input_signature=signature)
    return forward.get_concrete_function()


def inference_with_constant_weights(model):
    """`model`'s inference pass, traced once for any batch size, with its weights built into the graph as constants.

    While features are computed the backbone is frozen, so its weights are constants in fact. Given them as graph
    constants, Grappler's constant folding merges each inference-mode BatchNormalization's arithmetic into the
    layer before it (as a TFLite conversion does), which saves an elementwise pass over the activations per
    layer; with constant folding switched off, the gain is gone (docs/benchmarks.md, "Training throughput").
    `stateless_call` is Keras' own way to run a model on given weight values; under mixed precision it casts them
    as the variables would be.
    """
    import tensorflow as tf

    trainable = [variable.numpy() for variable in model.trainable_variables]
    non_trainable = [variable.numpy() for variable in model.non_trainable_variables]

    def forward(pixels):
        # tf.constant inside the traced function makes Const nodes; tensors made outside would be captured as
        # inputs, which Grappler cannot fold.
        outputs, _ = model.stateless_call(
            [tf.constant(value) for value in trainable],
            [tf.constant(value) for value in non_trainable],
            [pixels],
            training=False,
        )
        return outputs

    signature = [tf.TensorSpec([None, *model.input_shape[1:]], tf.float32)]
    return tf.function(forward, input_signature=signature).get_concrete_function()


def head_model(model):
    """A model from pooled features to probabilities made of `model`'s head layers (the ones after the pool)."""
    import keras

    names = [layer.name for layer in model.layers]
    head_layers = model.layers[names.index(POOL_LAYER_NAME) + 1 :]
    features = keras.Input(model.get_layer(POOL_LAYER_NAME).output.shape[1:], name="features")
    x = features
    for layer in head_layers:
        x = layer(x)
    return keras.Model(features, x, name="head")


def features_dataset(features: Features, labels: np.ndarray, batch_size: int, shuffle_seed: int | None = None):
    """Batches of (features, labels), in a fresh order each epoch when seeded. Features in memory are one tensor
    gathered by shuffled indices inside the graph (no copy in a shuffle buffer, no Python per step); spilled ones
    are read from their file a batch at a time."""
    import tensorflow as tf

    count = len(labels)
    if isinstance(features, RecordFile):
        label_array = np.asarray(labels)

        def load(indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return features.read(indices), label_array[indices]

        specs = (
            tf.TensorSpec([None, *features.record_shape], tf.float32),
            tf.TensorSpec([None], tf.as_dtype(label_array.dtype)),
        )
        return indexed_batches(count, batch_size, shuffle_seed, load, specs).prefetch(tf.data.AUTOTUNE)
    feature_tensor, label_tensor = tf.constant(features), tf.constant(labels)
    indices = tf.data.Dataset.range(count)
    if shuffle_seed is not None:
        indices = indices.shuffle(count, seed=shuffle_seed, reshuffle_each_iteration=True)
    dataset = indices.batch(batch_size).map(lambda i: (tf.gather(feature_tensor, i), tf.gather(label_tensor, i)))
    return dataset.with_options(per_worker_options()).prefetch(tf.data.AUTOTUNE)
