#!/usr/bin/env bash
# The GPU check (dev/gpu/README.md): installs the kit offline, then runs the CUDA tests, AMP training
# of every COCO R-50 config, the step time before / after the deferred reads, and the benchmark's
# GPU tables; writes JSON, the log and summary.md into $OUT (default output/gpu_check).
#
#   bash dev/gpu/run.sh                       # on the device machine ($OUT is set there)
#   PYTHON=/work/gpu-rehearsal/venv/bin/python bash dev/gpu/run.sh   # the CPU rehearsal
#
# Without CUDA every step that needs it is skipped with a message, and the training checks run on
# the CPU in full precision with small sizes: the rehearsal leaves CUDA as the only untried part.
# Each step has its own time limit (seconds, overridable) so that one slow step cannot eat the
# device lease; the steps run in order of importance.
set -uo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"
OUT="${OUT:-$repo/output/gpu_check}"
mkdir -p "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1
PYTHON="${PYTHON:-python3}"
T_TESTS="${T_TESTS:-110}" T_AMP="${T_AMP:-150}" T_STEP="${T_STEP:-45}"
T_ASSIGN="${T_ASSIGN:-100}" T_MODELS="${T_MODELS:-100}"
# STEPS: the steps to run (default all), e.g. STEPS="step bench_models" for a rerun of two
STEPS="${STEPS:-tests amp_train step bench_assign bench_models}"
want() { case " $STEPS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
export PYTHONUNBUFFERED=1 PYTHONWARNINGS="${PYTHONWARNINGS:-ignore::FutureWarning}"

t0=$(date +%s)
say() { printf '[gpu-check %4ds] %s\n' "$(( $(date +%s) - t0 ))" "$*"; }
declare -A rc_of
step() {  # step NAME LIMIT_S COMMAND...
    local name=$1 limit=$2 start rc
    shift 2
    say "== $name (limit ${limit} s): $*"
    start=$(date +%s)
    timeout --kill-after=10 "$limit" "$@"
    rc=$?
    [ $rc -eq 124 ] && say "$name: stopped at its ${limit} s limit"
    rc_of[$name]=$rc
    say "== $name: exit $rc after $(( $(date +%s) - start )) s"
}

# shellcheck source=dev/gpu/install.sh
source "$repo/dev/gpu/install.sh" || { say "kit install failed"; exit 2; }
site_path="$PYTHONPATH"
"$PYTHON" - <<'PY'
import platform, torch, torchvision, detectron2, numpy
cuda = torch.cuda.is_available()
print(f"python {platform.python_version()}, torch {torch.__version__}, torchvision "
      f"{torchvision.__version__}, numpy {numpy.__version__}, detectron2 {detectron2.__version__} "
      f"({detectron2.__file__})")
print("CUDA:", torch.cuda.get_device_name() if cuda else "not available (rehearsal: CUDA steps skipped)")
PY
if "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    cuda=1
else
    cuda=0
fi

# 1. the CUDA tests (AMP included); without CUDA pytest reports them skipped
want tests && step tests "$T_TESTS" "$PYTHON" -m pytest tests -q -p no:cacheprovider \
    -m "not long" -k "cuda or amp" -rs

# 2. 30 AMP iterations of every COCO R-50 config, 2 images of 800x1333 (CPU: 3 of 256x320)
want amp_train && step amp_train "$T_AMP" "$PYTHON" dev/gpu/checks.py amp-train --output "$OUT/amp_train.json" \
    ${AMP_ITERS:+--iters $AMP_ITERS}

# 3. one training iteration before / after the deferred reads (the package of GPU_BEFORE_REF,
#    copied into .gpukit/before by `make gpu-kit`)
if ! want step; then
    :
elif [ -d .gpukit/before/dense_assign ]; then
    rm -f "$OUT/step_time.json"
    PYTHONPATH="$repo/.gpukit/before:$site_path" step step_before "$T_STEP" \
        "$PYTHON" dev/gpu/checks.py step-time --label before --output "$OUT/step_time.json"
    step step_after "$T_STEP" "$PYTHON" dev/gpu/checks.py step-time --label after \
        --output "$OUT/step_time.json"
else
    say "step_before, step_after: skipped, .gpukit/before/dense_assign is missing (make gpu-kit)"
fi

# 4. the benchmark's GPU tables
if [ $cuda -eq 1 ]; then
    want bench_assign && step bench_assign "$T_ASSIGN" "$PYTHON" -m dense_assign.tools.benchmark --device cuda \
        --parts assign --num-gt 1 10 100 1000 --repeats 5 --output "$OUT/benchmark_assign.json"
    # the training step with AMP, then in full precision (detectron2 v0.6's own FCOS fails under
    # autocast, so its AMP row is an error and the fp32 table holds the comparison)
    want bench_models && step bench_models "$T_MODELS" "$PYTHON" -m dense_assign.tools.benchmark \
        --device cuda --train-step --inference --amp --train-images 2 --train-repeats 5 \
        --output "$OUT/benchmark_models.json"
    want bench_models && step bench_models_fp32 "$T_MODELS" "$PYTHON" -m \
        dense_assign.tools.benchmark --device cuda --train-step --train-images 2 \
        --train-repeats 5 --output "$OUT/benchmark_models_fp32.json"
else
    say "bench_assign, bench_models: skipped, no CUDA (the benchmark's CPU tables come from make benchmark)"
fi

"$PYTHON" dev/gpu/summarize.py "$OUT" && say "summary: $OUT/summary.md"
failed=0
for name in "${!rc_of[@]}"; do
    [ "${rc_of[$name]}" -ne 0 ] && { say "step $name exited ${rc_of[$name]}"; failed=1; }
done
say "done in $(( $(date +%s) - t0 )) s"
exit $failed
