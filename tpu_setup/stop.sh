#!/usr/bin/env bash
# Stop the launched command on every worker: SIGTERM to its process group, so r1jax saves a
# checkpoint and exits (relaunching resumes). A TPU is held by one process at a time, so a
# leftover run must be stopped before the next launch.
#
#   tpu_setup/stop.sh --name r1 --zone us-central2-b
# shellcheck source=common.sh source-path=SCRIPTDIR
source "$(dirname "$0")/common.sh"

parse_args "--name NAME --zone ZONE [--project ID] [--dry-run]" --name --zone --project -- "$@"
check_name
check_zone
check_project

# kill the process group (the job and anything it started); fall back to the process alone
ssh_all all "if [ -f $REMOTE_PID ]; then kill -TERM -- -\$(cat $REMOTE_PID) 2>/dev/null || \
kill -TERM \$(cat $REMOTE_PID) 2>/dev/null; rm -f $REMOTE_PID; fi; true"
