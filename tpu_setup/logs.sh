#!/usr/bin/env bash
# Follow the log of the launched command (Ctrl-C stops following, not the job).
#
#   tpu_setup/logs.sh --name r1 --zone us-central2-b [--worker 0 | --worker all] [--lines 100]
#
# Worker 0 is process 0, the one that writes metrics, plots and reports; --worker all
# interleaves every worker's log, which helps when one host fails and the others wait.
# shellcheck source=common.sh source-path=SCRIPTDIR
source "$(dirname "$0")/common.sh"

WORKER=0 TAIL_LINES=100
parse_args "--name NAME --zone ZONE [--project ID] [--worker N|all] [--lines N] [--dry-run]" \
    --name --zone --project --worker --lines -- "$@"
check_name
check_zone
check_project
[[ $WORKER =~ ^([0-9]+|all)$ ]] || die "bad --worker '$WORKER': a worker number or 'all'"
[[ $TAIL_LINES =~ ^[0-9]+$ ]] || die "bad --lines '$TAIL_LINES': a number"

ssh_all "$WORKER" "tail -n $TAIL_LINES -F $REMOTE_LOG"
