#!/usr/bin/env bash
# The main job end to end on the built-in sample data: sample data -> train -> export --int8 -> bench -> classify.
set -euo pipefail
out="${1:-demo-out}"
data="$out/digits"
run="$out/run"
started=$(date +%s)

if [ ! -d "$data" ]; then
  edgetl sample-data "$data"
fi

# No network here, so no ImageNet weights: MobileNetV2 (alpha 0.35) learns from scratch at 48x48 pixels.
edgetl train "$data" --out "$run" --backbone mobilenetv2 --alpha 0.35 --image-size 48 \
  --weights none --epochs 20 --patience 5 --batch-size 32 --quiet --overwrite
edgetl export "$run" --int8
edgetl bench "$run" --json "$out/bench.json"

echo
echo "classifying five held-out test images with the int8 TFLite file (no TensorFlow involved):"
mapfile -t held_out < <(python - "$run/split.json" <<'PY'
import json, sys
split = json.load(open(sys.argv[1]))
for relative, _ in split["test"][:5]:
    print(f"{split['root']}/{relative}")
PY
)
edgetl classify "$run/exports/model_int8.tflite" "${held_out[@]}" --top-k 2

echo
echo "sample data:     $data"
echo "run directory:   $run (model.keras, labels.txt, config.json, split.json, history.json, metrics.json)"
echo "exports:         $run/exports (verification in $run/exports.json)"
echo "benchmark:       $out/bench.json"
echo "demo took $(( $(date +%s) - started )) s"
echo
echo "one page to look at (open it in a browser):"
edgetl report "$run"
