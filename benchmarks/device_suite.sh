#!/usr/bin/env bash
# The GPU checks of the accelerator work in one run that fits in 8 minutes on one H200.
#
#   bash benchmarks/device_suite.sh [OUT_DIR]        # default OUT_DIR: $OUT, else runs/device_suite
#   QUICK=1 bash benchmarks/device_suite.sh DIR      # tiny sizes on any backend: checks the script itself
#
# Writes OUT_DIR/device_suite.md (one section per check: the command, its exit status, seconds and
# the tail of its output) and each check's full log beside it. Every check has its own time limit,
# so one that hangs or fails costs only its slot and the rest still run. Checks, in order:
#
#   1. the device (nvidia-smi, JAX's devices);
#   2. the fast tests on the GPU (JAX_PLATFORMS=cuda) with full fp32 matmuls
#      (JAX_DEFAULT_MATMUL_PRECISION=highest), then the same tests with JAX's default GPU
#      precision (TF32 on Hopper): the failures of that second run are the tests whose 1e-5
#      tolerances need full fp32 on a GPU;
#   3. training memory and compile time of every registry model's train step at batch 32 on
#      64 x 64 (benchmarks/train_memory.py; four processes in parallel, GPU preallocation off);
#   4. train step vs PyTorch (benchmarks/train_speed.py --device gpu: JAX fp32 / bf16, PyTorch
#      fp32 / bf16 + channels_last) at batch 32 and 256;
#   5. the selective scan at the Mamba nets' training shapes (benchmarks/scan_speed.py
#      --training-shapes: associative, sequential, pallas; throughput and memory roofline);
#   6. whole-scene inference: FusionMamba (random init, the published size) on a 1280 x 1280 PAN
#      and the HQNR of that product;
#   7. the samplers (benchmarks/sampling_speed.py --quick).
#
# Needs the project installed (pip install -e .) or PYTHONPATH at the repository root, and
# ml_collections importable (on a machine without it, install its wheel first). PyTorch is
# optional (check 4 prints a skip line without it).
set -u
cd "$(dirname "$0")/.."
OUT_DIR=${1:-${OUT:-runs/device_suite}}
mkdir -p "$OUT_DIR"
MD="$OUT_DIR/device_suite.md"
PY=${PYTHON:-python3}
QUICK=${QUICK:-0}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # several processes share the GPU in check 3
export PANSHARP_COMPILATION_CACHE=off       # compile times are measured, not loaded from disk
START=$(date +%s)

if [ "$QUICK" = 1 ]; then
  PLATFORM=${JAX_PLATFORMS:-cpu}
  BATCH=2; BIG=4; SIZE=32; STEPS=2; SCENE=64; MEM_MODELS="fusionnet,pnn,sbm"; SPEED_MODELS="fusionnet,pnn"
  TESTS="tests/test_selective_scan_pallas.py"
else
  PLATFORM=cuda
  BATCH=32; BIG=256; SIZE=64; STEPS=20; SCENE=1280; MEM_MODELS=""; SPEED_MODELS="pnn,pannet,dicnn,msdcnn,drpnn,fusionnet,lagnet"
  TESTS="tests/test_selective_scan.py tests/test_selective_scan_pallas.py tests/test_precision.py tests/test_metrics.py tests/test_cnn_baselines.py tests/test_diffusion.py tests/test_fsds.py"
fi

{
  echo "# Device suite"
  echo
  echo "$(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), QUICK=$QUICK, platform $PLATFORM"
  echo
} >"$MD"

# check TITLE LIMIT_S LOGNAME COMMAND...: run, record status, seconds and the output's tail
check() {
  local title=$1 limit=$2 log="$OUT_DIR/$3.log"
  shift 3
  local t0 rc
  t0=$(date +%s)
  echo "== $title (limit ${limit}s)" >&2
  timeout --kill-after=10 "$limit" "$@" >"$log" 2>&1
  rc=$?
  {
    echo "## $title"
    echo
    echo "\`$*\`: exit $rc$([ $rc = 124 ] && echo ' (time limit)'), $(($(date +%s) - t0)) s"
    echo
    echo '```'
    tail -n "${TAIL:-60}" "$log"
    echo '```'
    echo
  } >>"$MD"
  return 0
}

check "Device" 60 device bash -c "nvidia-smi -L 2>/dev/null || echo 'nvidia-smi: not found'; \
  JAX_PLATFORMS=$PLATFORM $PY -c 'import jax; print(jax.__version__, jax.devices())'"

check "Fast tests on the device, full fp32 matmuls" 170 tests_highest \
  env JAX_PLATFORMS="$PLATFORM" JAX_DEFAULT_MATMUL_PRECISION=highest \
  $PY -m pytest -q -x -p no:cacheprovider $TESTS
TAIL=25 check "Fast tests on the device, default matmul precision (TF32 on Hopper): failures need full fp32" 120 tests_default \
  env JAX_PLATFORMS="$PLATFORM" $PY -m pytest -q -p no:cacheprovider $TESTS

# check 3: the registry split over four processes (compiling is CPU work on the host)
if [ -z "$MEM_MODELS" ]; then
  MEM_MODELS=$($PY -c 'from pansharp_jax.models import registry; print(",".join(registry.names()))')
fi
IFS=, read -r -a ALL <<<"$MEM_MODELS"
GROUPS_=("" "" "" "")
for i in "${!ALL[@]}"; do
  g=$((i % 4))
  GROUPS_[$g]="${GROUPS_[$g]:+${GROUPS_[$g]},}${ALL[$i]}"
done
t0=$(date +%s)
pids=()
for g in 0 1 2 3; do
  [ -n "${GROUPS_[$g]}" ] || continue
  JAX_PLATFORMS=$PLATFORM timeout --kill-after=10 150 $PY benchmarks/train_memory.py --models "${GROUPS_[$g]}" \
    --batches "$BATCH" --size "$SIZE" >"$OUT_DIR/train_memory_$g.log" 2>&1 &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
{
  echo "## Training memory and compile time, batch $BATCH, ${SIZE} x ${SIZE} (4 processes in parallel)"
  echo
  echo "$(($(date +%s) - t0)) s; compile seconds are inflated by the parallel compiles."
  echo
  for g in 0 1 2 3; do
    [ -f "$OUT_DIR/train_memory_$g.log" ] && grep -E '^\|' "$OUT_DIR/train_memory_$g.log" | { [ "$g" = 0 ] && cat || grep -v -E '^\|( model |-)'; }
  done
  echo
  for g in 0 1 2 3; do
    [ -f "$OUT_DIR/train_memory_$g.log" ] && grep -i -E 'error|killed|traceback' "$OUT_DIR/train_memory_$g.log" | head -5
  done
  echo
} >>"$MD"

check "Train step: JAX fp32/bf16 vs PyTorch fp32 and bf16 + channels_last, batch $BATCH" 100 train_speed_small \
  env JAX_PLATFORMS="$PLATFORM" $PY benchmarks/train_speed.py --device gpu --models "$SPEED_MODELS" \
  --batch "$BATCH" --size "$SIZE" --steps "$STEPS" --precision both
check "Train step at batch $BIG" 80 train_speed_big \
  env JAX_PLATFORMS="$PLATFORM" $PY benchmarks/train_speed.py --device gpu --models pnn,pannet,dicnn \
  --batch "$BIG" --size "$SIZE" --steps "$STEPS" --precision both

if [ "$QUICK" = 1 ]; then
  check "Selective scan" 60 scan_speed env JAX_PLATFORMS="$PLATFORM" $PY benchmarks/scan_speed.py \
    --lengths 64 --runs 2 --d 8 --n 4 --methods sequential associative
else
  check "Selective scan at the training shapes" 70 scan_speed env JAX_PLATFORMS="$PLATFORM" $PY benchmarks/scan_speed.py \
    --training-shapes --runs 5 --methods associative sequential pallas
fi

check "Whole-scene inference: FusionMamba on a ${SCENE} x ${SCENE} PAN, and HQNR" 70 whole_scene \
  env JAX_PLATFORMS="$PLATFORM" $PY - "$SCENE" <<'EOF'
import sys, time
import jax, jax.numpy as jnp, numpy as np
from pansharp_jax.data import wald
from pansharp_jax.metrics import evaluate_full
from pansharp_jax.models import registry

side = int(sys.argv[1])
rng = np.random.default_rng(0)
lrms = jnp.asarray(rng.uniform(0.05, 0.6, (1, side // 4, side // 4, 8)), jnp.float32)
pan = jnp.asarray(rng.uniform(0.05, 0.6, (1, side, side, 1)), jnp.float32)
lms = wald.interp23tap(lrms, 4)
cfg = registry.default_config("fusionmamba")
cfg.scan_method = "auto"
model = registry.build_model(cfg)
params = jax.jit(model.init)(jax.random.PRNGKey(0), lrms[:, :16, :16], pan[:, :64, :64], lms[:, :64, :64])["params"]
fn = jax.jit(lambda p, a, b, c: model.apply({"params": p}, a, b, c, train=False))
t0 = time.perf_counter(); out = fn(params, lrms, pan, lms).block_until_ready(); first = time.perf_counter() - t0
times = []
for _ in range(3):
    t0 = time.perf_counter(); fn(params, lrms, pan, lms).block_until_ready(); times.append(time.perf_counter() - t0)
print(f"fusionmamba {side}x{side}: first call (compile + run) {first:.2f} s, then {min(times):.3f} s")
prod = np.clip(np.asarray(out[0], np.float64), 0, 1)
t0 = time.perf_counter()
scores = evaluate_full(prod, np.asarray(lrms[0], np.float64), np.asarray(pan[0], np.float64), sensor="WV2", ratio=4, max_dn=2047)
print(f"evaluate_full (HQNR, QNR) {time.perf_counter() - t0:.2f} s: HQNR {scores['HQNR']:.4f}")
EOF

if [ "$QUICK" = 1 ]; then
  check "Samplers" 60 sampling env JAX_PLATFORMS="$PLATFORM" $PY benchmarks/sampling_speed.py --sizes 32 --nfe 1 2 --samples 2 --runs 1 --no-loop
else
  check "Samplers" 60 sampling env JAX_PLATFORMS="$PLATFORM" $PY benchmarks/sampling_speed.py --quick
fi

echo "Total: $(($(date +%s) - START)) s" >>"$MD"
echo "wrote $MD" >&2
