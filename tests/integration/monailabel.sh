#!/usr/bin/env bash
# Opt-in integration test: a real MONAI Label 0.8.5 server serves the bundles (docs/monailabel.md).
#
#   bash tests/integration/monailabel.sh [BUNDLE ...]
#
# BUNDLE defaults to brats_mri_uncertainty nerve_ultrasound_segmentation. The script
#   1. installs MONAI Label in its own virtual environment (once; reused while its marker is there),
#   2. takes each bundle's model (MODELS, else models/model.pt) when it loads strictly into network_def,
#      else trains a tiny model on the demo data with the project's environment (its label may be empty),
#   3. copies the bundles into a temporary copy of MONAI Label's monaibundle app (model/<bundle>/) and
#      one demo image per bundle into a temporary studies folder,
#   4. starts `monailabel start_server` on 127.0.0.1 (a free port), waits for /info/,
#   5. POSTs /infer/<bundle>?image=<id> twice per bundle (cold, then warm) and checks each returned
#      label (shape, values in channel_def, non-empty, equal to the bundle's own pipeline),
#   6. stops the server it started (its own process group) on exit; exits non-zero on any failure.
#
# Environment: PYTHON (the project's python, default python), MONAILABEL_VENV (default
# <repo>/.venv-monailabel), MODELS (space-separated BUNDLE=PATH of the checkpoints to serve),
# TORCH_SPEC (a matched torch/torchvision pair, default "torch==2.14.1 torchvision==0.29.1"),
# TORCH_PIP_ARGS (extra pip arguments for that pair, e.g. an index of CPU wheels with
# TORCH_SPEC="torch==2.13.0+cpu torchvision==0.28.0+cpu"), TRAIN_EPOCHS (tiny training, default 3),
# START_TIMEOUT (seconds, default 300), KEEP_WORK=1 (keep the temporary folder: server log, labels).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO"
PYTHON=${PYTHON:-python}
VENV=${MONAILABEL_VENV:-$REPO/.venv-monailabel}
TRAIN_EPOCHS=${TRAIN_EPOCHS:-3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.14.1 torchvision==0.29.1}
START_TIMEOUT=${START_TIMEOUT:-300}
if (($#)); then BUNDLES=("$@"); else BUNDLES=(brats_mri_uncertainty nerve_ultrasound_segmentation); fi
CHECK=("$PYTHON" -m tests.integration.monailabel_check)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/monailabel.XXXXXX")
SERVER_PID=""
cleanup() {
    local status=$?
    if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM -- "-$SERVER_PID" 2>/dev/null || true  # the server's own process group only
        for _ in $(seq 20); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.5; done
        kill -KILL -- "-$SERVER_PID" 2>/dev/null || true
    fi
    if ((status)); then
        [[ -f $WORK/server.log ]] && tail -n 40 "$WORK/server.log" >&2
        echo "FAILED (exit $status); work folder: $WORK" >&2
    elif [[ ${KEEP_WORK:-0} == 1 ]]; then
        echo "work folder kept: $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$status"
}
trap cleanup EXIT
log() { echo "[monailabel.sh] $*"; }

# 1. MONAI Label's own environment: a matched torch/torchvision pair first (MONAI Label imports
# torchvision, and PyPI's torchvision wheels need the CUDA build of torch: with the CPU torch wheel
# `import torchvision` fails), then MONAI Label with that pair pinned, the DICOM clients it works
# with, numpy<2, and this project without its dependencies.
if [[ ! -f $VENV/.monailabel-ready ]]; then
    log "installing MONAI Label into $VENV"
    start=$(date +%s)
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    # shellcheck disable=SC2086
    "$VENV/bin/pip" install -q ${TORCH_PIP_ARGS:-} $TORCH_SPEC
    # shellcheck disable=SC2086
    "$VENV/bin/pip" install -q monailabel==0.8.5 $TORCH_SPEC "monai>=1.6,<1.7" \
        "pydicom<3" "pynetdicom<3" "dicomweb-client<0.60" "numpy<2"
    "$VENV/bin/pip" install -q --no-deps -e "$REPO"
    echo "$(($(date +%s) - start))" >"$VENV/.monailabel-ready"
    log "install: $(cat "$VENV/.monailabel-ready") s"
else
    log "reusing $VENV (install took $(cat "$VENV/.monailabel-ready") s)"
fi
"$VENV/bin/python" -c "import monailabel, monai, torch, monai_seg; print('monailabel', monailabel.__version__, \
'monai', monai.__version__, 'torch', torch.__version__)"
SAMPLE_APPS=$("$VENV/bin/python" -c "import sys; print(sys.prefix)")/monailabel/sample-apps
[[ -f $SAMPLE_APPS/monaibundle/main.py ]] || { echo "no monaibundle app in $SAMPLE_APPS" >&2; exit 1; }

# 2-3. the app folder with the bundles, and the studies
APP=$WORK/app
STUDIES=$WORK/studies
cp -r "$SAMPLE_APPS/monaibundle" "$APP"
declare -A IMAGE MODEL EMPTY_OK
for pair in ${MODELS:-}; do MODEL[${pair%%=*}]=${pair#*=}; done
for bundle in "${BUNDLES[@]}"; do
    src=$REPO/bundles/$bundle
    [[ -f $src/configs/inference.json ]] || { echo "no bundle $src" >&2; exit 1; }
    MODEL[$bundle]=${MODEL[$bundle]:-$src/models/model.pt}
    EMPTY_OK[$bundle]=""
    if [[ -f ${MODEL[$bundle]} ]] && "${CHECK[@]}" model "$src" "${MODEL[$bundle]}"; then
        IMAGE[$bundle]=$("${CHECK[@]}" sample "$src" "$WORK/data/$bundle" "$STUDIES" --model "${MODEL[$bundle]}")
    else
        IMAGE[$bundle]=$("${CHECK[@]}" sample "$src" "$WORK/data/$bundle" "$STUDIES")
        log "$bundle: no checkpoint that loads strictly; training $TRAIN_EPOCHS epochs on the demo data"
        start=$(date +%s)
        "$PYTHON" -m monai.bundle run training --config_file "$src/configs/train.json" \
            --meta_file "$src/configs/metadata.json" --logging_file "$src/configs/logging.conf" \
            --bundle_root "$WORK/train/$bundle" --dataset_dir "$WORK/data/$bundle" \
            --epochs "$TRAIN_EPOCHS" --num_workers 0 >"$WORK/train_$bundle.log" 2>&1 ||
            { tail -n 20 "$WORK/train_$bundle.log" >&2; exit 1; }
        MODEL[$bundle]=$WORK/train/$bundle/models/model.pt
        EMPTY_OK[$bundle]=--allow-empty
        log "$bundle: trained in $(($(date +%s) - start)) s"
    fi
    mkdir -p "$APP/model/$bundle/models"
    cp -r "$src/configs" "$APP/model/$bundle/"
    cp "$src/LICENSE" "$APP/model/$bundle/" 2>/dev/null || true
    cp "${MODEL[$bundle]}" "$APP/model/$bundle/models/model.pt"
done

# 4. the server, in its own process group, on a free local port; nothing is downloaded
PORT=$("$PYTHON" -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
URL=http://127.0.0.1:$PORT
MODELS=$(IFS=,; echo "${BUNDLES[*]}")
log "starting MONAI Label on $URL with $MODELS"
start=$(date +%s)
PATH=$VENV/bin:$PATH setsid "$VENV/bin/monailabel" start_server --app "$APP" --studies "$STUDIES" \
    --host 127.0.0.1 --port "$PORT" --conf models "$MODELS" --conf zoo_source local --conf sam2 false \
    --conf skip_trainers true >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
until curl -sf "$URL/info/" -o "$WORK/info.json"; do
    kill -0 "$SERVER_PID" 2>/dev/null || { echo "the server exited" >&2; exit 1; }
    (($(date +%s) - start < START_TIMEOUT)) || { echo "no /info/ after $START_TIMEOUT s" >&2; exit 1; }
    sleep 1
done
log "server up in $(($(date +%s) - start)) s"
"$PYTHON" - "$WORK/info.json" "${BUNDLES[@]}" <<'EOF'
import json, sys
info = json.load(open(sys.argv[1]))
for bundle in sys.argv[2:]:
    model = info["models"].get(bundle)
    if model is None:
        sys.exit(f"/info/ lists no model {bundle}: {sorted(info['models'])}")
    print(f"{bundle}: type {model['type']}, dimension {model['dimension']}, labels {model['labels']}")
EOF

# 5. inference over HTTP on the datastore's image, checked against the bundle's own pipeline
mkdir -p "$WORK/out"
for bundle in "${BUNDLES[@]}"; do
    image=${IMAGE[$bundle]}
    name=$(basename "$image")
    id=${name%%.*}
    ext=.${name#*.}
    # MONAI Label writes the label in the image's format: ask for PNG where that is lossy (JPEG)
    [[ $ext == .jpg || $ext == .jpeg ]] && ext=.png
    for run in cold warm; do
        label=$WORK/out/${bundle}_$run$ext
        seconds=$(curl -sf -X POST "$URL/infer/$bundle?image=$id&output=image" \
            -F "params={\"result_extension\": \"$ext\"}" -o "$label" -w '%{time_total}')
        log "$bundle: POST /infer/$bundle?image=$id ($run) $seconds s"
        "${CHECK[@]}" check "$APP/model/$bundle" "$image" "$label" "${MODEL[$bundle]}" ${EMPTY_OK[$bundle]}
    done
done
log "OK"
