#!/usr/bin/env bash
# Copy this checkout to ~/r1jax on every worker of the slice.
#
#   tpu_setup/sync.sh --name r1 --zone us-central2-b [--src DIR]
#
# The file list is git's: tracked files plus new files that .gitignore does not exclude, so
# local edits travel and .venv/, runs/ and checkpoints do not. Files are unpacked over the
# old copy, so run outputs kept under ~/r1jax on the workers survive a re-sync.
# shellcheck source=common.sh source-path=SCRIPTDIR
source "$(dirname "$0")/common.sh"

SRC=""
parse_args "--name NAME --zone ZONE [--project ID] [--src DIR] [--dry-run]" --name --zone --project --src -- "$@"
check_name
check_zone
check_project
SRC=${SRC:-$(cd "$(dirname "$0")/.." && pwd)}
git -C "$SRC" rev-parse --is-inside-work-tree >/dev/null 2>&1 || die "--src '$SRC' is not a git checkout"
where

archive=/tmp/r1jax-src-$NAME.tgz
src=$(quote "$SRC")
run_shell "git -C $src ls-files -z --cached --others --exclude-standard | tar -czf $archive -C $src --null -T -"
run gcloud compute tpus tpu-vm scp "$archive" "$NAME:r1jax-src.tgz" "${WHERE[@]}" --worker=all
ssh_all all "mkdir -p $REMOTE_DIR && tar -xzf ~/r1jax-src.tgz -C $REMOTE_DIR && rm ~/r1jax-src.tgz"
run rm -f "$archive"
