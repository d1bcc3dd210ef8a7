#!/usr/bin/env bash
# Every GPU benchmark in one command, on a machine with one NVIDIA GPU:
#
#     bash .gpu-carry/install && bash benchmarks/gpu.sh
#
# With OUT set (a directory), each step's output also goes to $OUT/<step>.txt (machine.txt,
# generate.txt, frontend.txt, sweep.txt, epoch.txt, packing.txt, ssl.txt); without it, to stdout only.
# The figures go into benchmarks/RESULTS.md by hand, with the date and the GPU from machine.txt.
#
# Sized to finish in about 8 minutes on an H100 (one device call may run 10). The sizes are
# estimates, not yet measured on a GPU, so every step has a hard cap (timeout); a step stopped at
# its cap still prints what it measured so far (the scripts turn SIGTERM into a clean stop, then
# need up to ~30 s to shut Ray down). With the caps the run takes at most about
# max(frontend + sweep, corpus generation) + epoch + packing = max(80 + 150, ~210) + 140 + 140 s
# = 8.5 minutes, plus the shut-down of any step that hit its cap.
#   - The paper-size corpus (4,720 WAVs at 48 kHz, ~45 ms per clip on one core: the longest
#     single step) is generated in the background while frontend.py and the sweep run.
#   - frontend.py: its defaults (320 clips, Mel and STFT, 7 repeats).
#   - sweep.py: 64 trials, ASHA over 8 epochs, 0.25 GPU per trial (4 at a time), paper-size model
#     on the 320-clip corpus frontend.py has just written: per-trial overhead dominates there,
#     which is what the sweep benchmark measures.
#   - epoch.py --full: the paper's corpus; 8 DataLoader workers for the conventional side (a GPU
#     machine's training script would not use 2 of 16 cores; epoch.py's default is 2). It runs
#     the conventional side first, then fit with stock modules, then fit.
#   - packing.py: N = 1, 2, 4, 8 on the paper-size corpus prepared by epoch.py, 6,000 training rows
#     per epoch, 3 epochs (epoch 1 untimed).
#   - ssl_frontend.py (only where transformers was carried): 32 clips through each base-size
#     encoder, capped at 60 s; with it the worst case is 9.5 minutes.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
START=$(date +%s)

if [ -n "${OUT:-}" ]; then mkdir -p "$OUT"; fi
log() { if [ -n "${OUT:-}" ]; then tee "$OUT/$1.txt"; else cat; fi; }

# step NAME CAP_SECONDS COMMAND...: run it under a cap, output to stdout and $OUT/NAME.txt
step() {
  local name=$1 cap=$2 t0 rc
  shift 2
  t0=$(date +%s)
  {
    echo "=== $name: $* (cap ${cap} s; started $(date -u +%H:%M:%S) UTC) ==="
    timeout -s TERM -k 30 "$cap" "$@" 2>&1
    rc=$?
    [ $rc -eq 124 ] && rc="124: stopped at its cap, figures above are partial"
    echo "=== $name: exit $rc after $(( $(date +%s) - t0 )) s ==="
  } | log "$name"
}

command -v nvidia-smi >/dev/null || { echo "gpu.sh: nvidia-smi not found: this is for a machine with an NVIDIA GPU" >&2; exit 2; }
$PY -c "import ray, optuna, librosa, soundfile, soxr, pyarrow, pydantic, sklearn, threadpoolctl" 2>/dev/null || {
  echo "gpu.sh: $PY lacks a dependency of ser-search (ray, optuna, librosa, soundfile, soxr, pyarrow, pydantic," \
       "scikit-learn, threadpoolctl); run 'bash .gpu-carry/install' first" >&2
  exit 2
}

{
  echo "date: $(date -u '+%Y-%m-%d %H:%M:%S') UTC"
  dirty=$(git status --porcelain 2>/dev/null | grep -q . && echo ' + uncommitted changes')
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo 'unknown (no .git)')$dirty"
  echo "command: bash benchmarks/gpu.sh"
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  echo "CPUs: $(nproc), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
  $PY -c "import platform, torch, ray, optuna, librosa
print(f'Python {platform.python_version()}, torch {torch.__version__} (CUDA {torch.version.cuda}),',
      f'ray {ray.__version__}, optuna {optuna.__version__}, librosa {librosa.__version__}')"
} 2>&1 | log machine

# The paper-size corpus, in the background: deterministic, and epoch.py/packing.py find it complete.
GENLOG="${OUT:-$(mktemp -d)}/generate.txt"
{
  echo "=== generate: 4720 synthetic WAVs for epoch.py --full and packing.py ==="
  g0=$(date +%s)
  timeout -s TERM 300 $PY -c "from benchmarks.common import PAPER_CLIPS as n, default_workdir as w, synthetic_wav_corpus
synthetic_wav_corpus(w() / f'wav48k-{n}', n)"
  echo "=== generate: exit $? after $(( $(date +%s) - g0 )) s ==="
} > "$GENLOG" 2>&1 &
GEN=$!

step frontend 80 $PY benchmarks/frontend.py --device cuda
step sweep 150 $PY benchmarks/sweep.py --device cuda --trials 64 --max-epochs 8 --gpu-fraction 0.25
wait "$GEN"
cat "$GENLOG"
step epoch 140 $PY benchmarks/epoch.py --device cuda --full --workers 8
step packing 140 $PY benchmarks/packing.py --device cuda --n 1,2,4,8 --clips 4720 --max-train-clips 6000 --epochs 3

# The ssl frontend's encoders (random weights of the published sizes) on the GPU: needs transformers,
# which .gpu-carry holds only when built with it (../shared/tools/gpu-carry transformers).
if $PY -c "import transformers" 2>/dev/null; then
  step ssl 60 $PY benchmarks/ssl_frontend.py --device cuda --clips 32
else
  echo "=== ssl: skipped, transformers is not installed (build .gpu-carry with: ../shared/tools/gpu-carry transformers) ===" | log ssl
fi

echo "gpu.sh: all steps done in $(( $(date +%s) - START )) s${OUT:+; logs in $OUT}"
