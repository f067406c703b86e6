#!/usr/bin/env bash
# One run on a GPU machine: environment, the C extension, the test suite with CUDA enabled, and
# the CUDA benchmarks (eager step, CUDA-graph step, torch.compile, learning, Diehl & Cook).
#
#   OUT=/some/folder bash benchmarks/gpu_check.sh        # from the repository root
#
# Everything is logged under $OUT (7 files: summary.log, env.log, build.log, tests_cuda.log,
# tests_suite.log, bench.log, compile.log). Every stage has its own time budget (`timeout`), and
# all stages together stop before GPU_CHECK_BUDGET seconds (default 470 s, under 8 minutes), so
# a hang in one stage cannot eat the others. The most valuable stages run first. Nothing is
# installed (the machine may be offline): the repository goes on PYTHONPATH.
set -uo pipefail

cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/out/gpu_check}"
mkdir -p "$OUT"
BUDGET="${GPU_CHECK_BUDGET:-470}"
# the tests to run (a dry run elsewhere may pass a few files: GPU_CHECK_TESTS="tests/test_x.py")
read -r -a TESTS <<<"${GPU_CHECK_TESTS:-tests}"
PY="${PYTHON:-python3}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export MPLBACKEND=Agg
export PYTHONDONTWRITEBYTECODE=1
export TORCHINDUCTOR_CACHE_DIR="${TMPDIR:-/tmp}/pysnn-inductor"
SCRATCH="$(mktemp -d)"
SUMMARY="$OUT/summary.log"
: >"$SUMMARY"

# stage NAME BUDGET_S LOG COMMAND...: run COMMAND with at most BUDGET_S seconds (less when the
# overall budget runs out), its output appended to LOG (and to stdout); one line in summary.log.
stage() {
    local name="$1" budget="$2" log="$3"
    shift 3
    local left=$((BUDGET - SECONDS))
    if ((left < 10)); then
        echo "SKIPPED $name: overall budget spent (${SECONDS}s of ${BUDGET}s)" | tee -a "$SUMMARY"
        return 0
    fi
    ((budget > left)) && budget=$left
    local start=$SECONDS
    {
        echo
        echo "=== $name (budget ${budget}s, started at ${start}s) ==="
        echo "\$ $*"
    } | tee -a "$log"
    timeout -k 5 "$budget" "$@" 2>&1 | tee -a "$log"
    local rc=${PIPESTATUS[0]}
    local note=""
    ((rc == 124 || rc == 137)) && note=" (TIMED OUT after ${budget}s)"
    echo "=== $name: rc=$rc in $((SECONDS - start))s$note ===" | tee -a "$log"
    printf '%-34s rc=%-4s %4ss%s\n' "$name" "$rc" "$((SECONDS - start))" "$note" >>"$SUMMARY"
    return 0
}

# -- 0. environment (env.log) ------------------------------------------------------------------
stage "nvidia-smi" 20 "$OUT/env.log" nvidia-smi
stage "gpu query" 15 "$OUT/env.log" nvidia-smi \
    --query-gpu=name,memory.total,driver_version,clocks.max.sm,power.limit --format=csv
stage "python and torch" 60 "$OUT/env.log" "$PY" -c '
import os, platform, sys, torch
print("python", sys.version.replace("\n", " "), platform.platform())
print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())
print("torch.cuda.is_available():", torch.cuda.is_available())
if torch.cuda.is_available():
    print("device:", torch.cuda.get_device_name(), torch.cuda.get_device_capability())
    x = torch.ones(1000, device="cuda")
    print("a CUDA kernel ran:", float(x.sum()) == 1000.0)
print("cpu count", os.cpu_count(), "torch threads", torch.get_num_threads())
for name in ("numpy", "pytest", "pytest_timeout", "setuptools", "sklearn", "matplotlib",
             "hypothesis", "nir", "norse", "sphinx", "gymnasium", "triton", "h5py", "tqdm"):
    try:
        version = getattr(__import__(name), "__version__", "(no version)")
        print(f"  {name:16s} {version}")
    except Exception as error:
        print(f"  {name:16s} missing ({type(error).__name__})")
'
stage "compilers" 10 "$OUT/env.log" bash -c 'command -v gcc cc nvcc; gcc --version | head -1'

# -- 1. the C extension (build.log): optional, CUDA runs eager PyTorch ---------------------------
if command -v gcc >/dev/null 2>&1 && "$PY" -c "import setuptools" >/dev/null 2>&1; then
    stage "build_ext --inplace" 60 "$OUT/build.log" "$PY" setup.py -q build_ext --inplace
else
    echo "no gcc or no setuptools: the C kernels are not built (eager PyTorch only)" |
        tee -a "$OUT/build.log" "$SUMMARY"
fi
stage "native available?" 30 "$OUT/build.log" "$PY" -c \
    'from pysnn import native; print("pysnn.native.available():", native.available(), "enabled:", native.enabled())'

# -- 2. tests (tests_cuda.log, tests_suite.log) ---------------------------------------------------
# pyproject's addopts has -q: "-v" brings the shards back to one progress line per file (so a
# shard stopped by its time limit still shows where it failed), "-vv" lists every CUDA test.
PYTEST=("$PY" -m pytest -p no:cacheprovider --durations=15)
if "$PY" -c "import pytest_timeout" >/dev/null 2>&1; then
    PYTEST+=(--timeout 120)
fi
# The CUDA-selected tests (every test id with "cuda": the device matrix, CapturedStep's graphs,
# test_cuda.py and the CUDA rows of the other modules) and, at the same time, the rest of the
# suite in four shards (they only need the CPUs). Everything in this stage shares one budget.
"$PY" - "$SCRATCH" "${TESTS[@]}" <<'EOF'
import os, sys
files = []
for path in sys.argv[2:]:
    if os.path.isdir(path):
        files += sorted(
            os.path.join(path, name) for name in os.listdir(path)
            if name.startswith("test_") and name.endswith(".py")
        )
        files += sorted(
            os.path.join(path, name) for name in os.listdir(path)
            if os.path.isdir(os.path.join(path, name)) and not name.startswith(("_", "."))
        )
    else:
        files.append(path)
# files that tests/conftest.py does not collect (an optional package is missing) are left out:
# pytest ignores collect_ignore only when it walks a directory, not for files it is given
sys.path.insert(0, "tests")
import conftest

files = [f for f in files if os.path.basename(f) not in set(conftest.collect_ignore)]
print("not collected:", conftest.collect_ignore or "none")
size = {f: sum(os.path.getsize(os.path.join(r, n)) for r, _, ns in os.walk(f) for n in ns)
        if os.path.isdir(f) else os.path.getsize(f) for f in files}
shards = [[] for _ in range(4)]
load = [0] * 4
for f in sorted(files, key=size.get, reverse=True):
    i = load.index(min(load))
    shards[i].append(f)
    load[i] += size[f]
for i, shard in enumerate(shards):
    with open(os.path.join(sys.argv[1], f"shard{i}.txt"), "w") as handle:
        handle.write(" ".join(shard))
EOF
suite_shard() {
    if [[ ! -s "$SCRATCH/shard$1.txt" ]]; then
        echo "shard $1: no files" >"$SCRATCH/shard$1.log"
        return 0
    fi
    # shellcheck disable=SC2046
    OMP_NUM_THREADS=3 "${PYTEST[@]}" -v -rfE --tb=short -k "not cuda" $(cat "$SCRATCH/shard$1.txt") \
        >"$SCRATCH/shard$1.log" 2>&1
    echo "shard $1 rc=$?" >>"$SCRATCH/shard$1.log"
}
export -f suite_shard
export SCRATCH
TEST_BUDGET=200
TEST_START=$SECONDS
for i in 0 1 2 3; do
    (timeout -k 5 $((TEST_BUDGET + 5)) bash -c "$(declare -p PYTEST); $(declare -f suite_shard); suite_shard $i") &
done
stage "pytest -k cuda (device matrix)" "$TEST_BUDGET" "$OUT/tests_cuda.log" \
    env OMP_NUM_THREADS=3 "${PYTEST[@]}" -vv -rfEs --tb=long -k cuda "${TESTS[@]}"
wait
for i in 0 1 2 3; do
    {
        echo
        echo "=== shard $i: $(cat "$SCRATCH/shard$i.txt")"
        cat "$SCRATCH/shard$i.log"
    } >>"$OUT/tests_suite.log"
    tail -n 3 "$SCRATCH/shard$i.log" | sed "s/^/suite shard $i: /" >>"$SUMMARY"
done
echo "suite shards done at ${SECONDS}s ($((SECONDS - TEST_START))s)" >>"$SUMMARY"

# -- 3. benchmarks on a quiet machine (bench.log) ----------------------------------------------
stage "step_time cuda (network only)" 70 "$OUT/bench.log" \
    "$PY" benchmarks/step_time.py --device cuda
stage "step_time cuda, MSTDPET" 45 "$OUT/bench.log" \
    "$PY" benchmarks/step_time.py --device cuda --quick --rule mstdpet --reductions sum
stage "learning_time cuda" 60 "$OUT/bench.log" \
    "$PY" benchmarks/learning_time.py --device cuda --quick
stage "Diehl & Cook cuda (B=1, 16; 6400)" 70 "$OUT/bench.log" \
    "$PY" benchmarks/peers.py --device cuda --cuda-graph --only dc,dc6400,step --rounds 1

# -- 4. torch.compile(mode="reduce-overhead") of the step, last: it may be slow (compile.log) ---
stage "step_time cuda --compile" 45 "$OUT/compile.log" \
    "$PY" benchmarks/step_time.py --device cuda --quick --compile --batches 1,32 --delays 0 \
    --reductions sum

echo "total ${SECONDS}s of ${BUDGET}s" | tee -a "$SUMMARY"
rm -rf "$SCRATCH"
