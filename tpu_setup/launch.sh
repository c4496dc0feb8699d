#!/usr/bin/env bash
# Start one command on every worker at once, in the background, from ~/r1jax with the venv
# active; its output goes to ~/r1jax-run.log on each worker (follow it with logs.sh).
#
#   tpu_setup/launch.sh --name r1 --zone us-central2-b -- r1jax grpo --config experiments/r1_zero_qwen_math_1_5b.py ...
#
# Every worker must run the same program: JAX on a pod is one process per host, and they
# find each other through jax.distributed. The words after `--` are joined with spaces and
# run by the worker's shell, as ssh does, so quote anything the worker must see quoted.
# The command runs under setsid and nohup, so it survives the ssh session; stop.sh ends it.
# --foreground runs it in the ssh session instead and prints its output (setup steps, checks).
# shellcheck source=common.sh source-path=SCRIPTDIR
source "$(dirname "$0")/common.sh"

FOREGROUND=0
parse_args "--name NAME --zone ZONE [--project ID] [--foreground] [--dry-run] -- COMMAND..." \
    --name --zone --project --foreground -- COMMAND "$@"
check_name
check_zone
check_project
((${#ARGS[@]})) || die "no command given: put it after '--', e.g. -- r1jax grpo --trainer.steps 10"

job="${ARGS[*]}"
if ((FOREGROUND)); then
    ssh_all all "cd $REMOTE_DIR && . $REMOTE_VENV/bin/activate && $job"
    exit
fi
ssh_all all "cd $REMOTE_DIR && . $REMOTE_VENV/bin/activate && \
{ setsid nohup bash -c $(quote "$job") > $REMOTE_LOG 2>&1 < /dev/null & echo \$! > $REMOTE_PID; }"
