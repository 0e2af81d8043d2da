#!/usr/bin/env bash
# Submit babyjax training to a SLURM GPU cluster (sbatch launch/slurm/train.sbatch with the right layout).
#
# Usage: launch/slurm/submit.sh --config FILE --workdir DIR [flags] [--config.KEY=VALUE ...] [-- TRAIN_ARGS...]
#        launch/slurm/submit.sh --array-args DIR --array-tasks N [flags]     (a job array: python -m babyjax.study)
#   --config FILE          training config, relative to the repository root (e.g. configs/strict.py)
#   --workdir DIR          run directory on storage every node sees
#   --config.KEY=VALUE     config override, passed to launch/train.py verbatim
#   --nodes N              nodes (default: 1)
#   --gpus-per-node N      GPUs per node (default: 8)
#   --per gpu|node         one JAX process per GPU (default) or per node
#   --time D-HH:MM:SS      time limit of one job; the run continues in requeued jobs (default: 24:00:00)
#   --signal-lead SECONDS  SIGTERM the training this long before the time limit, to save and requeue (default: 600)
#   --max-requeues N       stop requeueing after N restarts (default: 20)
#   --partition P, --account A, --qos Q   passed to sbatch when given
#   --job-name NAME        (default: babyjax)
#   --python PYTHON        interpreter on the nodes (default: REPO/.venv/bin/python if present, else python3)
#   --sbatch-arg=ARG       any other sbatch flag (repeatable; '=' form), e.g. --sbatch-arg=--exclusive
#   --array-args DIR       a job array instead of one run: task i trains with the launch/train.py flags listed in
#                          DIR/i.args, one per line (written by python -m babyjax.study --launcher slurm)
#   --array-tasks N        tasks of the array (0 .. N-1)
#   --array-parallel K     at most K tasks at once (default: 0, no limit)
#   --dry-run              print the commands instead of running them (also DRY_RUN=1)
#   -h, --help             this help
# Logs go to REPO/logs/slurm/NAME-JOBID.out (an array task: NAME-ARRAYJOBID_TASK.out) (appended across requeues). Anything after `--` is appended to the
# launch/train.py command line unchanged.
#
# Example:
#   launch/slurm/submit.sh --nodes 2 --partition gpu --config configs/strict.py --workdir /shared/runs/strict \
#     --config.mesh.fsdp=8
set -euo pipefail
# shellcheck source=../common.sh
. "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

config=""
workdir=""
nodes=1
gpus=8
per="gpu"
time_limit="24:00:00"
signal_lead=600
max_requeues=20
job_name="babyjax"
python=""
array_args=""
array_tasks=""
array_parallel=0
optional=()
overrides=()
while (($#)); do
  if parse_common_flag "$@"; then shift "$SHIFT"; continue; fi
  case "$1" in
    --config | --config=*) take_value "$@"; config="$VALUE" ;;
    --config.*) overrides+=("$1") SHIFT=1 ;;
    --workdir | --workdir=*) take_value "$@"; workdir="$VALUE" ;;
    --nodes | --nodes=*) take_value "$@"; nodes="$VALUE" ;;
    --gpus-per-node | --gpus-per-node=*) take_value "$@"; gpus="$VALUE" ;;
    --per | --per=*) take_value "$@"; per="$VALUE" ;;
    --time | --time=*) take_value "$@"; time_limit="$VALUE" ;;
    --signal-lead | --signal-lead=*) take_value "$@"; signal_lead="$VALUE" ;;
    --max-requeues | --max-requeues=*) take_value "$@"; max_requeues="$VALUE" ;;
    --partition | --partition=* | --account | --account=* | --qos | --qos=*)
      take_value "$@"; optional+=("${1%%=*}=$VALUE") ;;
    --job-name | --job-name=*) take_value "$@"; job_name="$VALUE" ;;
    --python | --python=*) take_value "$@"; python="$VALUE" ;;
    --array-args | --array-args=*) take_value "$@"; array_args="$VALUE" ;;
    --array-tasks | --array-tasks=*) take_value "$@"; array_tasks="$VALUE" ;;
    --array-parallel | --array-parallel=*) take_value "$@"; array_parallel="$VALUE" ;;
    --sbatch-arg | --sbatch-arg=*) take_value "$@"; optional+=("$VALUE") ;;
    --) shift; overrides+=("$@"); break ;;
    *) unknown_arg "$1" ;;
  esac
  shift "$SHIFT"
done
check_dry_run_env
if [[ -n "$array_args" ]]; then
  [[ -z "$config$workdir" ]] || usage_error "--array-args gives each task its --config and --workdir: drop them"
  [[ "$array_tasks" =~ ^[1-9][0-9]*$ ]] || usage_error "--array-tasks must be a positive integer, got '$array_tasks'"
  require_uint array-parallel "$array_parallel"
  for ((i = 0; i < array_tasks; i++)); do
    [[ -f "$array_args/$i.args" ]] || usage_error "no $array_args/$i.args: --array-args needs one file per task"
  done
else
  require config "$config"
  require workdir "$workdir"
  check_config_file "$config"
fi
[[ "$nodes" =~ ^[1-9][0-9]*$ ]] || usage_error "--nodes must be a positive integer, got '$nodes'"
[[ "$gpus" =~ ^[1-9][0-9]*$ ]] || usage_error "--gpus-per-node must be a positive integer, got '$gpus'"
require_uint signal-lead "$signal_lead"
require_uint max-requeues "$max_requeues"
case "$per" in
  gpu) tasks="$gpus" ;;
  node) tasks=1 ;;
  *) usage_error "--per must be gpu or node, got '$per'" ;;
esac
[[ "$job_name" =~ ^[A-Za-z0-9._-]+$ ]] || usage_error "--job-name must be letters, digits, '.', '_' or '-', got '$job_name'"

logdir="$BABYJAX_ROOT/logs/slurm"
output="$logdir/%x-%j.out"
if [[ -n "$array_args" ]]; then
  array="0-$((array_tasks - 1))"
  ((array_parallel == 0)) || array+="%$array_parallel"
  optional+=("--array=$array")
  output="$logdir/%x-%A_%a.out"
  script_args=("--array-args=$array_args" "--max-requeues=$max_requeues")
else
  script_args=(--config "$config" --workdir "$workdir" "--max-requeues=$max_requeues")
fi
if [[ -n "$python" ]]; then script_args+=("--python=$python"); fi
if ((${#overrides[@]})); then script_args+=(-- "${overrides[@]}"); fi

run mkdir -p "$logdir"
run sbatch --parsable "--job-name=$job_name" "--nodes=$nodes" "--gpus-per-node=$gpus" "--ntasks-per-node=$tasks" \
  "--time=$time_limit" "--signal=B:USR1@$signal_lead" --requeue --open-mode=append \
  "--chdir=$BABYJAX_ROOT" "--output=$output" "${optional[@]}" \
  "$BABYJAX_ROOT/launch/slurm/train.sbatch" "${script_args[@]}"
