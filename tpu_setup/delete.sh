#!/usr/bin/env bash
# Delete the slice (all its workers and their disks: copy results off first).
#
#   tpu_setup/delete.sh --name r1 --zone us-central2-b [--queued]
#
# --queued for a slice made with create.sh --queued: deletes the queued resource and, with
# --force, the node it holds; deleting only the node would leave the request behind.
# shellcheck source=common.sh source-path=SCRIPTDIR
source "$(dirname "$0")/common.sh"

QUEUED=0
parse_args "--name NAME --zone ZONE [--project ID] [--queued] [--dry-run]" --name --zone --project --queued -- "$@"
check_name
check_zone
check_project
where

if ((QUEUED)); then
    run gcloud compute tpus queued-resources delete "$NAME" "${WHERE[@]}" --force --quiet
else
    run gcloud compute tpus tpu-vm delete "$NAME" "${WHERE[@]}" --quiet
fi
