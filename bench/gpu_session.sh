#!/usr/bin/env bash
# The measurements of one short GPU session (issue 10's speed targets, issue 9's longer training), in the
# order of their worth, each stage under its own time limit so that one slow stage cannot starve the rest.
# Every figure goes to $OUT as JSON and to stdout; docs/architecture.md ("Speed options") records them.
#
#   OUT=out/gpu bash bench/gpu_session.sh            # on a CUDA machine (about 8 minutes on one H200)
#   (a machine without omegaconf: carry its wheel and `pip install --target /tmp/site`, PYTHONPATH=/tmp/site)
#   SMOKE=1 OUT=out/gpu-smoke bash bench/gpu_session.sh   # the same stages, tiny and on the CPU (a dry run)
#
# Stages: (1) DAM paper config end to end (real loader + Trainer.run_step, bf16, channels-last) with a bare
# ResNet-50 step of the same precision; (2) model-only speed of AGW/CAJ/DAM against bare ResNet-50
# (bench/train_speed.py); (3) DAM end to end with contiguous memory; (4) DAM end to end with the
# augmentations in the workers (data.augment_on=workers; the CUDA default augments the batch on the GPU);
# (5) DAM end to end compiled (train.compile=true); (6) tiny DAM trained about 4x the demo's steps (bench/learning.py).
set -u
OUT=${OUT:-out/gpu}
PY=${PY:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 VIREID_CACHE=${VIREID_CACHE:-/tmp/vireid_cache}
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD"  # vireid from this checkout (the GPU image has torch, not vireid)
if [ "${SMOKE:-0}" = 1 ]; then
  DEV=cpu; E2E=configs/sysu/dam_tiny.yaml; IDS=40; STEPS=4; WARM=2; MS_ARGS="--models dam --steps 2 --warmup 1"
  LEARN_EPOCHS=2; WORKERS=1; T=(300 300 300 300 300 300)
else
  DEV=cuda; E2E=configs/sysu/dam.yaml; IDS=491; STEPS=60; WARM=10; MS_ARGS="--models agw,caj,dam --amp"
  LEARN_EPOCHS=50; WORKERS=14; T=(120 80 50 50 150 140)
fi
stage() {  # stage NAME LIMIT_S COMMAND...
  local name=$1 limit=$2; shift 2
  echo "=== $name (limit ${limit}s) $(date +%T)"
  local t0=$SECONDS
  timeout "$limit" "$@" 2>&1 | grep -v -e "^W[0-9]" -e "it/s]" -e "step/s]"
  echo "=== $name: exit ${PIPESTATUS[0]} after $((SECONDS - t0))s"
}
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null
  $PY -c "import torch, platform; print('torch', torch.__version__, 'python', platform.python_version(), 'cuda', torch.cuda.is_available() and torch.cuda.get_device_name())"
  nproc; } | tee "$OUT/environment.txt"

E2E_ARGS=(--device "$DEV" --e2e-ids "$IDS" --steps "$STEPS" --warmup "$WARM" --e2e-work /tmp/vireid_e2e)
stage "1 end to end, defaults" "${T[0]}" $PY bench/train_speed.py --end-to-end "$E2E" "${E2E_ARGS[@]}" --bare \
  --json "$OUT/e2e_default.json" data.workers=$WORKERS
# shellcheck disable=SC2086
stage "2 model only vs bare ResNet-50" "${T[1]}" $PY bench/train_speed.py --device "$DEV" $MS_ARGS \
  --json "$OUT/model_only.json"
stage "3 end to end, contiguous" "${T[2]}" $PY bench/train_speed.py --end-to-end "$E2E" "${E2E_ARGS[@]}" \
  --json "$OUT/e2e_contiguous.json" data.workers=$WORKERS train.channels_last=false
stage "4 end to end, augmentations in the workers" "${T[3]}" $PY bench/train_speed.py --end-to-end "$E2E" \
  "${E2E_ARGS[@]}" --json "$OUT/e2e_worker_augment.json" data.workers=$WORKERS data.augment_on=workers
stage "5 end to end, compiled" "${T[4]}" $PY bench/train_speed.py --end-to-end "$E2E" "${E2E_ARGS[@]}" \
  --json "$OUT/e2e_compiled.json" data.workers=$WORKERS train.compile=true
stage "6 tiny DAM, ${LEARN_EPOCHS} epochs" "${T[5]}" $PY bench/learning.py --models dam --work /tmp/vireid_learning \
  --out "$OUT/learning_dam.json" train.device=$DEV train.epochs=$LEARN_EPOCHS train.eval_every=$((LEARN_EPOCHS / 6 > 0 ? LEARN_EPOCHS / 6 : 1)) \
  data.workers=$WORKERS
echo "=== done $(date +%T)"
