"""The export formats: one table (`FORMATS`) of what each is called, how it is converted, written and run, and
the default agreement it must reach; and `ExportOptions`, the defaults of `edgetl export`.

Nothing here imports more than the standard library at module level (converters are imported when they run), so
the CLI reads its choices and defaults from here, and the device-side bench its file names, without paying for it.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING

from edgetl.errors import EdgetlError
from edgetl.exporting.int8 import INT8_FALLBACKS, IO_TYPES, ONNX_INT8_TARGETS, Int8Recipe, most_calibration_images

if TYPE_CHECKING:
    from edgetl.exporting.calibration import CalibrationImages, ImageSample

# The calibration methods each int8 ladder tries, by edgetl's name, its first choice first; percentile clips the
# rarest extreme activations (CALIBRATION_PERCENTILE). The int8 TFLite file's are its quantizer's (QUANTIZERS).
ONNX_CALIBRATION_METHODS = ("minmax", "percentile")


@dataclass(frozen=True)
class ExportOptions:
    calibration_samples: int = 200
    min_agreement: float | None = None  # None: each format's own default
    io_type: str | None = None  # input/output type of the int8 TFLite file; None: the quantizer's (QUANTIZERS)
    opset: int = 17
    quantizer: str = "converter"  # who makes the int8 TFLite file: a name in QUANTIZERS
    int8_fallback: str = INT8_FALLBACKS[0]  # may int8 files keep their most sensitive layers in float
    target: str = next(iter(ONNX_INT8_TARGETS))  # the CPUs the int8 ONNX file is made for (ONNX_INT8_TARGETS)

    @property
    def int8_io_type(self) -> str:
        quantizer = QUANTIZERS.get(self.quantizer)
        return self.io_type or (quantizer.io_types[0] if quantizer else IO_TYPES[0])


@dataclass(frozen=True)
class KerasFileOptions:
    """What a Keras file from outside edgetl needs besides itself; a run directory takes none of it."""

    labels: Path | None = None  # class names, one per line, in output order
    calibration: Path | None = None  # images: a folder per class named as the labels, or a plain folder
    out: Path | None = None  # the output folder; default MODEL-export beside the file
    image_size: int | None = None  # for a model whose input size is not fixed
    normalization: str = "raw"  # what input the model expects; edgetl prepends it so exports take raw pixels

    @property
    def given(self) -> list[str]:
        """The options given, as flags."""
        defaults = KerasFileOptions()
        return [
            f"--{option.name.replace('_', '-')}"
            for option in fields(self)
            if getattr(self, option.name) != getattr(defaults, option.name)
        ]


# Measurements kept per converter kind. A ladder's graphs usually name their activations alike and share one;
# where the bias-corrected graphs name some otherwise than the plain one (a convolution with a zero bias, as a
# freshly built network's are, has none in the plain graph until a correction gives it one), each keeps its own,
# instead of the two measuring again in turn.
KEPT_MEASUREMENTS = 2


@dataclass
class ConversionInputs:
    """Everything a converter may need besides the model; `cache` shares work between formats (the float
    ONNX graph is the starting point of the int8 one) and between the int8 ladder's rungs (`calibrated`).
    `calibration` decodes the calibration images as far as asked; an int8 `recipe` says how many of them to
    use, how, and which layers stay in float."""

    options: ExportOptions
    calibration: CalibrationImages | None = None
    cache: dict = field(default_factory=dict)
    recipe: Int8Recipe | None = None
    corrections: dict = field(default_factory=dict)  # the recipe's bias corrections (bias_correction.Correction)

    @property
    def calibration_images(self) -> ImageSample:
        return self.calibration.take(self.recipe.calibration_images)

    def calibrated(self, kind: str, calibrate: Callable[..., object]):
        """The recipe's graph for a converter `kind`, ready to quantise: `calibrate(measurements, most_images)`
        makes it, given the Measurements of the activations earlier graphs of that kind made, the latest first
        (none for the first, which measures its own, sized for `most_images`). Rungs that differ only in the
        method share a graph; every rung of a kind shares a measurement, so the calibration images pass through
        the float graph once whatever the ladder tries. Only the latest graph of a kind is kept: one can be large
        (an Xception's weights are 90 MB), and the ladder comes back to an earlier one only to rank on it, which
        makes it again from the measurement and the first conversion (cheap)."""
        recipe = self.recipe
        key: Hashable = (kind, recipe.calibration_images, recipe.bias_correction, recipe.float_layers)
        latest = (kind, "latest")
        if latest not in self.cache or self.cache[latest][0] != key:
            measurements = self.cache.setdefault((kind, "measurements"), [])
            most = most_calibration_images(self.options.calibration_samples, self.calibration.available)
            self.cache.pop(latest, None)  # let go before the next is made
            calibration = calibrate(tuple(measurements), most)
            if not any(calibration.measurement is measured for measured in measurements):
                measurements.insert(0, calibration.measurement)
                del measurements[KEPT_MEASUREMENTS:]
            self.cache[latest] = (key, calibration)
        return self.cache[latest][1]

    def keep_only(self, kinds: set[str]) -> bool:
        """Let go of what converters of any other kind ("tflite", "onnx") cached: their graphs, calibrations and
        measurements, as large as the model's weights and activation tails each, are needed by no format left.
        Whether anything went."""
        others = {export_format.kind for export_format in FORMATS.values()} - kinds
        gone = [key for key in self.cache if (key[0] if isinstance(key, tuple) else key) in others]
        for key in gone:
            del self.cache[key]
        return bool(gone)


@dataclass(frozen=True)
class ExportFormat:
    name: str
    filename: str
    kind: str  # "tflite", "onnx" or "savedmodel": how the result is written and run
    convert: Callable  # (keras model, ConversionInputs) -> bytes (tflite) or ModelProto (onnx) or model (savedmodel)
    min_agreement: float  # default verification gate: float formats must match Keras almost everywhere
    calibrated: bool = False  # needs calibration images
    quantized_by: str = ""  # recorded as `quantizer`; "--quantizer" means the option chooses
    # Promises integer-only kernels (what NPUs and microcontrollers need). The converter does NOT enforce it: even
    # with only TFLITE_BUILTINS_INT8 allowed, an op without an int8 kernel (e.g. SIN) is silently left in float
    # between DEQUANTIZE/QUANTIZE, so the written file is checked. ONNX QDQ graphs are mixed by design.
    integer_only: bool = False
    # Calibrated formats: the calibration methods the ladder tries, the default first (for a format --quantizer
    # makes, the quantizer's).
    calibration_methods: tuple[str, ...] = ("minmax",)
    # Calibrated formats: (model, inputs) -> layer names, most sensitive to int8 first, for float fallback. A name
    # names the Keras layers in it (TFLite tensor names do; ONNX ones are made to, see onnx.FLOAT_LAYER_JOIN), so
    # bias correction leaves the layers kept in float out and still applies to the rest.
    rank_layers: Callable | None = None
    # The ExportOptions it reads besides min_agreement (every format's gate); an option given for formats that
    # all ignore it is refused (check_options), not silently dropped.
    takes: frozenset[str] = frozenset()
    # Calibrated formats: whether the weights of layers that are not depthwise get pair-limited scales under these
    # options (exporting/weight_scales.py), as bias correction must know.
    pair_limited_weights: Callable[[ExportOptions], bool] = lambda options: False

    def methods(self, options: ExportOptions) -> tuple[str, ...]:
        """The calibration methods the ladder tries under these options."""
        if self.quantized_by == "--quantizer":
            return QUANTIZERS[options.quantizer].calibration_methods
        return self.calibration_methods


# What every calibrated format reads.
CALIBRATED_OPTIONS = frozenset({"calibration_samples", "int8_fallback"})


def _tflite_float32(model, inputs: ConversionInputs):
    from edgetl.exporting.tflite import convert_float32

    return convert_float32(model)


def _tflite_float16(model, inputs: ConversionInputs):
    from edgetl.exporting.tflite import convert_float16

    return convert_float16(model)


def _tflite_dynamic(model, inputs: ConversionInputs):
    from edgetl.exporting.tflite import convert_dynamic

    return convert_dynamic(model)


def _tflite_calibration(model, inputs: ConversionInputs):
    """The recipe's calibrated TFLite graph: the first one converted with other bias corrections written into its
    biases where that is exact (TfliteCalibration.rebiased), else the converter's conversion of the model as it
    is now."""
    from edgetl.exporting.tflite import TfliteCalibration

    def calibrate(measurements, most: int) -> TfliteCalibration:
        first = inputs.cache.get(("tflite", "first"))
        rebiased = first.rebiased(inputs.corrections, inputs.calibration_images) if first else None
        if rebiased is not None:
            return rebiased
        measurement = measurements[0] if measurements else None
        converted = TfliteCalibration(model, inputs.calibration_images, measurement, most, inputs.corrections)
        inputs.cache.setdefault(("tflite", "first"), converted)
        return converted

    return inputs.calibrated("tflite", calibrate)


def _converter_int8(model, inputs: ConversionInputs):
    recipe = inputs.recipe
    return _tflite_calibration(model, inputs).quantize(recipe.method, inputs.options.int8_io_type, recipe.float_layers)


def _converter_rank(model, inputs: ConversionInputs) -> list[str]:
    """Ranked on the recipe's own graph: the one its rung quantised (bias correction included)."""
    from edgetl.exporting.tflite import rank_calibrated

    return rank_calibrated(_tflite_calibration(model, inputs), inputs.options.int8_io_type, inputs.recipe.method)


def _ai_edge_int8(model, inputs: ConversionInputs):
    from edgetl.exporting.aiedge import quantize_int8_ai_edge

    return quantize_int8_ai_edge(model, inputs.calibration_images)


@dataclass(frozen=True)
class Quantizer:
    """Who may make the int8 TFLite file (`--quantizer NAME`), and what it can do."""

    name: str
    description: str  # for --help
    # The input/output types it writes, its default first: uint8 is what MediaPipe Tasks, the TFLite Task Library
    # and Android's ML Model Binding accept (they refuse int8 input).
    io_types: tuple[str, ...]
    calibration_methods: tuple[str, ...]  # what the ladder tries, its first choice first
    quantize: Callable  # (keras model, ConversionInputs) -> the int8 .tflite bytes
    rank_layers: Callable | None = None  # (model, inputs) -> layers most sensitive first; None: no float islands


QUANTIZERS: dict[str, Quantizer] = {
    q.name: q
    for q in (
        # edgetl rewrites the converter's calibrated ranges for percentile (exporting/activation_ranges.py).
        Quantizer(
            "converter", "the TFLite converter", IO_TYPES, ("percentile", "minmax"), _converter_int8, _converter_rank
        ),
        # ai-edge-quantizer (the `aiedge` extra) calibrates its own way, writes int8 I/O only and, as edgetl calls
        # it, keeps no chosen layers in float.
        Quantizer("ai-edge", "ai-edge-quantizer", ("int8",), ("minmax",), _ai_edge_int8),
    )
}


def _tflite_int8(model, inputs: ConversionInputs):
    return QUANTIZERS[inputs.options.quantizer].quantize(model, inputs)


def _tflite_rank(model, inputs: ConversionInputs) -> list[str]:
    rank_layers = QUANTIZERS[inputs.options.quantizer].rank_layers
    return rank_layers(model, inputs) if rank_layers is not None else []


def _onnx_rank(model, inputs: ConversionInputs) -> list[str]:
    """Ranked on the recipe's own graph: the one its rung quantised (bias correction included), against the
    model's float graph uncorrected. That is the ladder's plain conversion, which its rung without bias
    correction has made by then: with the model corrected, as it is while this runs, there is none to make."""
    from edgetl.exporting.onnx import rank_calibrated

    calibration = _onnx_calibration(model, inputs)
    plain = _plain_prepared(inputs) if inputs.corrections else None
    return rank_calibrated(calibration, inputs.recipe.method, inputs.options.target, plain)


def _plain_prepared(inputs: ConversionInputs):
    """The file of the model's float ONNX graph uncorrected, pre-processed for onnxruntime's quantiser: kept from
    the ladder's rung without bias correction (pre-processing an Xception at 299 px again cost 2 s and peaked 540
    MB above its own start), else made from the plain conversion; None where there is neither."""
    from edgetl.exporting.onnx import pre_processed

    if ("onnx", "plain prepared") not in inputs.cache and "onnx" in inputs.cache:
        _keep_plain_prepared(inputs, lambda folder: pre_processed(inputs.cache["onnx"], folder)[0])
    return inputs.cache.get(("onnx", "plain prepared"), (None,))[0]


def _keep_plain_prepared(inputs: ConversionInputs, make: Callable) -> None:
    """Keep with the cache the pre-processed plain graph's file that `make(folder)` writes in a folder of its own
    (removed with the cache entry) and returns the path of."""
    import tempfile
    from pathlib import Path

    work = tempfile.TemporaryDirectory(prefix="edgetl-onnx-plain-")
    inputs.cache["onnx", "plain prepared"] = (make(Path(work.name)), work)


def _float_onnx(model, inputs: ConversionInputs):
    """The float ONNX graph of the model as it is (no bias correction), converted once."""
    from edgetl.exporting.onnx import convert_onnx

    if "onnx" not in inputs.cache:
        inputs.cache["onnx"] = convert_onnx(model, opset=inputs.options.opset)
    copy = type(inputs.cache["onnx"])()
    copy.CopyFrom(inputs.cache["onnx"])
    return copy


def _corrected_onnx(model, inputs: ConversionInputs):
    """The float ONNX graph of the model as bias-corrected now (inputs.corrections): once the plain graph is known,
    the plain graph with the corrections written into its folded biases, found by their values
    (onnx.bias_placements_by_value) or, where values do not tell, from a first corrected conversion
    (onnx.bias_placements); else tf2onnx's conversion of the model as it is now."""
    from edgetl.exporting.bias_correction import folded_biases, holders_of
    from edgetl.exporting.onnx import bias_placements, bias_placements_by_value, convert_onnx, rebiased

    if "onnx" in inputs.cache:
        folded = folded_biases(model, holders_of(inputs.corrections))
        placements = bias_placements_by_value(inputs.cache["onnx"], inputs.corrections, folded)
        if placements is not None:  # every correction that moves a bias has its place
            return rebiased(inputs.cache["onnx"], placements, inputs.corrections)
    placements = inputs.cache.get(("onnx", "bias placements"))
    if placements is None and "onnx" in inputs.cache and ("onnx", "first corrected") in inputs.cache:
        corrected, corrections = inputs.cache.pop(("onnx", "first corrected"))
        placements = inputs.cache["onnx", "bias placements"] = (
            bias_placements(inputs.cache["onnx"], corrected, corrections) or {}
        )  # {}: none learned, every corrected graph is converted
    if placements:
        model_proto = rebiased(inputs.cache["onnx"], placements, inputs.corrections)
        if model_proto is not None:
            return model_proto
    model_proto = convert_onnx(model, opset=inputs.options.opset)
    if placements is None:
        inputs.cache.setdefault(("onnx", "first corrected"), (model_proto, inputs.corrections))
    return model_proto


def _onnx_calibration(model, inputs: ConversionInputs):
    import shutil
    import tempfile
    from pathlib import Path

    from edgetl.exporting.onnx import OnnxCalibration

    recipe = inputs.recipe

    def calibrate(measurements, most: int) -> OnnxCalibration:
        float_model = _corrected_onnx(model, inputs) if recipe.bias_correction else _float_onnx(model, inputs)
        work = tempfile.TemporaryDirectory(prefix="edgetl-onnx-int8-")  # removed with the calibration
        # Every rung's graph has the model's weights: their quantisation is shared by all (its biases are its own).
        shared = inputs.cache.setdefault(("onnx", "weight quantisations"), {})
        calibration = OnnxCalibration(
            float_model, inputs.calibration_images, Path(work.name), measurements, most, work, shared
        )
        if not recipe.bias_correction and ("onnx", "plain prepared") not in inputs.cache:
            # The ranking's reference (_plain_prepared).
            _keep_plain_prepared(inputs, lambda folder: Path(shutil.copy(calibration.prepared, folder)))
        return calibration

    return inputs.calibrated("onnx", calibrate)


def _onnx_int8(model, inputs: ConversionInputs):
    recipe = inputs.recipe
    return _onnx_calibration(model, inputs).quantize(recipe.method, recipe.float_layers, inputs.options.target)


def _savedmodel(model, inputs: ConversionInputs):
    return model  # written by write_savedmodel straight from the Keras model


FORMATS: dict[str, ExportFormat] = {
    f.name: f
    for f in (
        ExportFormat("tflite-float32", "model_float32.tflite", "tflite", _tflite_float32, 0.99),
        ExportFormat(
            "tflite-float16", "model_float16.tflite", "tflite", _tflite_float16, 0.99, quantized_by="converter"
        ),
        ExportFormat(
            "tflite-dynamic", "model_dynamic.tflite", "tflite", _tflite_dynamic, 0.98, quantized_by="converter"
        ),
        ExportFormat(
            "tflite-int8",
            "model_int8.tflite",
            "tflite",
            _tflite_int8,
            0.90,
            calibrated=True,
            quantized_by="--quantizer",
            integer_only=True,
            rank_layers=_tflite_rank,
            takes=CALIBRATED_OPTIONS | {"io_type", "quantizer"},
        ),
        ExportFormat("onnx", "model.onnx", "onnx", _float_onnx, 0.99, takes=frozenset({"opset"})),
        ExportFormat(
            "onnx-int8",
            "model_int8.onnx",
            "onnx",
            _onnx_int8,
            0.90,
            calibrated=True,
            quantized_by="onnxruntime",
            calibration_methods=ONNX_CALIBRATION_METHODS,
            rank_layers=_onnx_rank,
            takes=CALIBRATED_OPTIONS | {"opset", "target"},
            pair_limited_weights=lambda options: ONNX_INT8_TARGETS[options.target].pair_limited_weights,
        ),
        ExportFormat("savedmodel", "saved_model", "savedmodel", _savedmodel, 0.99),
    )
}


# The order an export makes its kinds of file in, whatever order they are asked for in (the records keep that
# order): tf2onnx's conversion needs the most memory over what the process already holds (Grappler folds the
# weights into new constants, copy after copy), and the process holds the least before its first conversion, as
# what TensorFlow's converters leave behind grows with each (figures: docs/benchmarks.md, export cost's fifth
# round). So ONNX comes first.
MAKING_ORDER = ("onnx", "tflite", "savedmodel")

# The tools that load each kind of file as it is, as a record lists them for its users (edgetl's own engines are
# in runtime/runtimes.py). MediaPipe Tasks (and the TFLite Task Library, Android's ML Model Binding) read the
# standard metadata every .tflite carries and take float32 or uint8 input, never int8.
FILE_CLIENTS = {"tflite": ("LiteRT", "MediaPipe"), "onnx": ("onnxruntime",), "savedmodel": ("TensorFlow",)}
METADATA_READERS = frozenset({"MediaPipe"})


def clients_for(kind: str, input_dtype: str) -> list[str]:
    return [
        client for client in FILE_CLIENTS[kind] if client not in METADATA_READERS or input_dtype in ("float32", "uint8")
    ]


def check_formats(formats: list[str]) -> None:
    unknown = [name for name in formats if name not in FORMATS]
    if unknown:
        raise EdgetlError(f"unknown export format '{unknown[0]}': choose from {', '.join(FORMATS)}")
    if not formats:
        raise EdgetlError(f"no export format given: choose from {', '.join(FORMATS)}")


def check_options(formats: list[str], options: ExportOptions) -> None:
    """Each option's value, then that an option given (not at its default) is read by one of `formats`."""
    if options.io_type is not None and options.io_type not in IO_TYPES:
        raise EdgetlError(f"--io-type {options.io_type}: unknown; choose one of {', '.join(IO_TYPES)}")
    if options.quantizer not in QUANTIZERS:
        raise EdgetlError(f"--quantizer {options.quantizer}: unknown; choose one of {', '.join(QUANTIZERS)}")
    if options.target not in ONNX_INT8_TARGETS:
        raise EdgetlError(f"--target {options.target}: unknown; choose one of {', '.join(ONNX_INT8_TARGETS)}")
    if options.int8_fallback not in INT8_FALLBACKS:
        raise EdgetlError(
            f"--int8-fallback {options.int8_fallback}: unknown; choose one of {', '.join(INT8_FALLBACKS)}"
        )
    check_io_type(options.quantizer, options.int8_io_type)
    defaults = ExportOptions()
    for option in fields(ExportOptions):
        takers = [name for name, export_format in FORMATS.items() if option.name in export_format.takes]
        given = getattr(options, option.name) != getattr(defaults, option.name)
        if takers and given and not any(name in takers for name in formats):
            raise EdgetlError(
                f"--{option.name.replace('_', '-')} applies to {', '.join(takers)}, which --formats does not include "
                f"(it has {', '.join(formats)})"
            )


def check_io_type(quantizer: str, io_type: str) -> None:
    """That `quantizer` writes int8 TFLite files with `io_type` input and output; if not, who does."""
    if io_type not in QUANTIZERS[quantizer].io_types:
        writes = " or ".join(QUANTIZERS[quantizer].io_types)
        others = " or ".join(f"--quantizer {q.name}" for q in QUANTIZERS.values() if io_type in q.io_types)
        raise EdgetlError(
            f"--quantizer {quantizer} writes {writes} input and output; --io-type {io_type} needs {others}"
        )


def default_formats(int8: bool, onnx: bool) -> list[str]:
    """What `edgetl export` writes without --formats: TFLite float32, ONNX, and with --int8 their int8 twins."""
    formats = ["tflite-float32"] + (["tflite-int8"] if int8 else [])
    if onnx:
        formats += ["onnx"] + (["onnx-int8"] if int8 else [])
    return formats
