#!/usr/bin/env bash
# GPU figures in one prepared run of at most 9 minutes (H100/H200): environment, CUDA-only correctness,
# the speed ladder, and time to quality. Every stage has its own time limit; a stage that fails or runs
# out of time is recorded and the next one runs; the summary table prints last.
#
#   benchmarks/gpu_check.sh [--smoke] [--budget SECONDS] [--stages LIST] [OUTDIR]     (OUTDIR default: $OUT)
#
# Stages, in order (--stages takes a comma-separated subset, e.g. for a short rerun of what failed):
#   env                  torch/CUDA/cuDNN versions, device, bf16 matmul TFLOP/s (the peak for MFU) -> env.json
#   checks               fp32 vs bf16 loss, channels_last vs NCHW, compiled vs eager, GPU vs CPU render of
#                        synth-shapes3d, device-resident vs host data, each timed, tolerances stated -> checks.json
#   tests                pytest -m gpu: the tests that `make test` skips without CUDA -> tests.json
#   ladder-paper         gpu_train.py speed fp32 -> bf16 -> channels_last -> fast_path -> compile: images/s,
#                        peak memory, MFU -> gpu_train-paper-cuda.json
#   ladder-paper-latent  the same for `paper-latent`, when that preset exists (else recorded as skipped)
#   quality              gpu_train.py quality: the quickest-learning preset (tiny-cpu, fast path) trained until
#                        DCI D >= 0.9 or the rest of the budget is spent, scored along the way -> gpu_quality-*.json
# The quality stage's preset, metric protocol and extra overrides come from QUALITY_PRESET (tiny-cpu),
# QUALITY_METRICS_PRESET (fast) and QUALITY_SET ("KEY=VALUE ..."). The stage list with status and seconds
# goes to stages.jsonl, every stage's output to gpu_check.log: at most 8 files and no folders, the most
# the device tool brings back from $OUT. The quality run's checkpoints live in a temporary folder,
# removed at the end.
#
# Time plan (--budget, default 540 s): each stage's limit is the smaller of its own (env 30, checks 90,
# tests 45, ladder-paper 240, ladder-paper-latent 120) and what the budget has left after a 20 s reserve
# for the summary; the quality stage takes all that is left, and stops itself before its limit.
#
# --smoke runs everything on the CPU at tiny shapes (the tests' tiny model, 1 timed step, the ladder's fp32
# and fast_path variants only: bf16, channels_last and compile are covered by the checks; 4x the limits and
# a 1200 s budget, as backstops on shared CPUs), so CI proves the script before GPU time is spent
# (tests/test_benchmark_scripts.py).
#
# On the lent GPU (the device tool; its machine has python3 with torch but lacks diffusers, lightgbm and
# importlib_metadata): first, here, `PYTHON=.venv/bin/python benchmarks/gpu_wheels.sh` puts those wheels
# in .whl/ (git-ignored);
# then one call, carry [".whl"], timeout_s 600:
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site
#   .whl/*.whl && export PYTHONPATH=/tmp/site || exit; bash benchmarks/gpu_check.sh "$OUT"
# (one line). A rerun of single stages: add e.g. --stages checks,tests --budget 200.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
SMOKE=0
BUDGET=
STAGES=env,checks,tests,ladder-paper,ladder-paper-latent,quality
OUTDIR=${OUT:-}
QUALITY_PRESET=${QUALITY_PRESET:-tiny-cpu}
QUALITY_METRICS_PRESET=${QUALITY_METRICS_PRESET:-fast}  # canonical, once canonical DCI is quick
read -ra QUALITY_SET <<<"${QUALITY_SET:-}"  # more overrides, e.g. "train.batch_size=256 train.lr=2e-3"
RESERVE=20
MIN_STAGE=10

usage() { sed -n '2,/^set -uo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0; }
die() { echo "gpu_check.sh: $*" >&2; exit 2; }
while (($#)); do
  case $1 in
    --smoke) SMOKE=1 ;;
    --budget|--stages)
      (($# >= 2)) || die "$1 needs a value"
      [[ $1 == --budget ]] && BUDGET=$2 || STAGES=$2
      shift ;;
    -h|--help) usage ;;
    -*) die "unknown option $1 (options: --smoke, --budget SECONDS, --stages LIST)" ;;
    *) OUTDIR=$1 ;;
  esac
  shift
done
[[ -n $OUTDIR ]] || die "no output folder: give one, or set OUT"
[[ -z $BUDGET ]] && BUDGET=$(( SMOKE ? 1200 : 540 ))
SCALE=$(( SMOKE ? 4 : 1 ))  # --smoke: the limits are only backstops, on CPUs that may be shared
[[ $BUDGET =~ ^[0-9]+$ ]] && (( BUDGET >= 60 )) || die "--budget must be whole seconds >= 60, got '$BUDGET'"
for s in ${STAGES//,/ }; do
  [[ ,env,checks,tests,ladder-paper,ladder-paper-latent,quality, == *,$s,* ]] \
    || die "unknown stage '$s' (stages: env, checks, tests, ladder-paper, ladder-paper-latent, quality)"
done
mkdir -p "$OUTDIR" || die "cannot create $OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
[[ -e $OUTDIR/stages.jsonl ]] && die "$OUTDIR already holds a run (stages.jsonl); choose an empty folder"

cd "$ROOT"
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 MPLBACKEND=Agg
LOG=$OUTDIR/gpu_check.log
RUNS=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check_runs.XXXXXX")
trap 'rm -rf "$RUNS"' EXIT
T0=$SECONDS
FAILED=0
SMOKE_FLAG=()
((SMOKE)) && SMOKE_FLAG=(--smoke)

record() {  # stage status seconds limit note
  printf '{"stage": "%s", "status": "%s", "seconds": %d, "limit_s": %d, "note": "%s"}\n' \
    "$1" "$2" "$3" "$4" "${5//\"/\'}" >>"$OUTDIR/stages.jsonl"
  printf '[%4ds] %-20s %-10s %4ds  %s\n' $((SECONDS - T0)) "$1" "$2" "$3" "$5"
}

# begin_stage NAME LIMIT: false (and recorded) when the stage is not selected or the budget is spent;
# else sets STAGE and LIMIT, the smaller of LIMIT and what the budget has left after the reserve
begin_stage() {
  STAGE=$1
  [[ ,$STAGES, == *,$1,* ]] || return 1
  local left=$(( BUDGET - (SECONDS - T0) - RESERVE )) want=$(( $2 * SCALE ))
  LIMIT=$(( want < left ? want : left ))
  if (( LIMIT < MIN_STAGE )); then
    record "$1" "no time" 0 "$LIMIT" "budget spent: ${left} s left of ${BUDGET} s"
    FAILED=1
    return 1
  fi
}

# run_stage COMMAND...: runs it under the stage's limit, its output to the log, and records the outcome
run_stage() {
  local start=$SECONDS rc status
  printf '\n===== %s (limit %d s) %s\n$ %s\n' "$STAGE" "$LIMIT" "$(date -u +%FT%TZ)" "$*" >>"$LOG"
  timeout --kill-after=5 "$LIMIT" "$@" >>"$LOG" 2>&1
  rc=$?
  case $rc in
    0) status=ok ;;
    124|137) status="timed out"; FAILED=1 ;;
    *) status=failed; FAILED=1 ;;
  esac
  record "$STAGE" "$status" $((SECONDS - start)) "$LIMIT" "$([[ $rc != 0 ]] && echo "exit $rc; see gpu_check.log")"
}

if ((SMOKE)); then
  read -ra SMOKE_SET <<<"$("$PY" benchmarks/gpu_checks.py smoke-set)"
  LADDER=(--preset tiny-cpu --device cpu --batch-size 4 --steps 1 --variants fp32,fast_path --set "${SMOKE_SET[@]}")
else
  LADDER=(--device cuda --steps 20)
fi

if begin_stage env 30; then run_stage "$PY" benchmarks/gpu_checks.py env "$OUTDIR" "${SMOKE_FLAG[@]}"; fi
if begin_stage checks 90; then run_stage "$PY" benchmarks/gpu_checks.py checks "$OUTDIR" "${SMOKE_FLAG[@]}"; fi
if begin_stage tests 45; then run_stage "$PY" benchmarks/gpu_checks.py tests "$OUTDIR" "${SMOKE_FLAG[@]}"; fi

PEAK=$("$PY" benchmarks/gpu_checks.py peak "$OUTDIR")  # empty without env.json: then the datasheet's
if begin_stage ladder-paper 240; then
  PRESET=(--preset paper)
  ((SMOKE)) && PRESET=()  # LADDER names the tiny preset
  run_stage "$PY" benchmarks/gpu_train.py speed "${PRESET[@]}" "${LADDER[@]}" --out "$OUTDIR" \
    --time-limit $((LIMIT - 10)) ${PEAK:+--peak-tflops "$PEAK"}
fi
if begin_stage ladder-paper-latent 120; then
  if ((SMOKE)); then
    record "$STAGE" skipped 0 "$LIMIT" "smoke: the tiny shapes are a pixel model; this stage runs on a GPU"
  elif [[ ! -f src/diffdrl/configs/paper-latent.yaml ]]; then
    record "$STAGE" skipped 0 "$LIMIT" "no paper-latent preset in this checkout yet"
  else
    run_stage "$PY" benchmarks/gpu_train.py speed --preset paper-latent "${LADDER[@]}" --out "$OUTDIR" \
      --time-limit $((LIMIT - 10)) ${PEAK:+--peak-tflops "$PEAK"}
  fi
fi

if begin_stage quality 100000; then
  # the run stops itself before its limit: the command minutes leave 20 s for the last scoring
  read -r MINUTES EVERY < <(awk -v s="$LIMIT" -v smoke="$SMOKE" 'BEGIN {
    m = (s - 20) / 60; e = m / 9; if (e < 0.2) e = 0.2; if (smoke) e = 0.02
    printf "%.2f %.2f\n", m, e }')
  QUALITY=(--name "$QUALITY_PRESET" --preset "$QUALITY_PRESET" --device cuda --metrics dci)
  SET=(train.checkpoint_every=1000000000 train.eval_every=1000000000 train.log_every=1000 "${QUALITY_SET[@]}")
  if ((SMOKE)); then
    QUALITY=(--name smoke --preset tiny-cpu --device cpu --metrics dci --max-minutes 0.02)
    SET+=("${SMOKE_SET[@]}" train.batch_size=4)
  fi
  run_stage "$PY" benchmarks/gpu_train.py quality "${QUALITY[@]}" --every "$EVERY" --command-minutes "$MINUTES" \
    --metrics-preset "$QUALITY_METRICS_PRESET" --runs "$RUNS" --out "$OUTDIR" --set "${SET[@]}"
fi

echo
"$PY" benchmarks/gpu_summary.py "$OUTDIR" "${SMOKE_FLAG[@]}" | tee -a "$LOG"
echo "all files in $OUTDIR ($((SECONDS - T0)) s)"
exit $FAILED
