#!/usr/bin/env bash
# Mount a Cloud Storage bucket at ~/r1jax/runs on every worker (Cloud Storage FUSE), so that
# all hosts see one directory: a multi-host checkpoint is written by every host into the
# same place, and run outputs outlive the slice.
#
#   tpu_setup/mount.sh --name r1 --zone us-central2-b --bucket my-r1jax-runs
#
# Make the bucket with a hierarchical namespace (see the README): orbax commits a checkpoint
# by renaming its temporary directory, and only such buckets rename directories atomically.
# shellcheck source=common.sh source-path=SCRIPTDIR
source "$(dirname "$0")/common.sh"

BUCKET=""
parse_args "--name NAME --zone ZONE --bucket BUCKET [--project ID] [--dry-run]" \
    --name --zone --project --bucket -- "$@"
check_name
check_zone
check_project
BUCKET=${BUCKET#gs://}
[[ -n $BUCKET ]] || die "--bucket is required"
[[ $BUCKET =~ ^[a-z0-9][-a-z0-9_.]{1,61}[a-z0-9]$ ]] || die "bad bucket name '$BUCKET'"

apt="sudo apt-get -o DPkg::Lock::Timeout=600 -y -q"
repo="deb [signed-by=/usr/share/keyrings/cloud.google.asc] https://packages.cloud.google.com/apt"
remote="set -e; if ! command -v gcsfuse >/dev/null; then"
remote+=" echo \"$repo gcsfuse-\$(lsb_release -c -s) main\" | sudo tee /etc/apt/sources.list.d/gcsfuse.list"
remote+=" && curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg"
remote+=" | sudo tee /usr/share/keyrings/cloud.google.asc >/dev/null && $apt update && $apt install gcsfuse; fi"
runs=$REMOTE_DIR/runs
remote+="; mkdir -p $runs; mountpoint -q $runs || gcsfuse --implicit-dirs $BUCKET $runs"
ssh_all all "$remote"
