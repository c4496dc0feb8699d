#!/usr/bin/env bash
# Install Python, r1jax and jax[tpu] on every worker (run sync.sh first), then check that
# JAX sees every chip of the slice.
#
#   tpu_setup/install.sh --name r1 --zone us-central2-b [--python 3.11] [--extras tpu,hf]
#
# TPU VM images ship Ubuntu 22.04's Python 3.10 and r1jax needs 3.11 or newer, so a newer
# Python comes from the deadsnakes archive into a virtual environment at ~/r1jax-venv.
# The check runs on all workers at once because a multi-host TPU runtime only starts when
# every host joins; it prints "process_index process_count device_count" once per worker.
# shellcheck source=common.sh source-path=SCRIPTDIR
source "$(dirname "$0")/common.sh"

PYTHON=3.11 EXTRAS=tpu,hf
parse_args "--name NAME --zone ZONE [--project ID] [--python 3.11] [--extras tpu,hf] [--dry-run]" \
    --name --zone --project --python --extras -- "$@"
check_name
check_zone
check_project
[[ $PYTHON =~ ^3\.(1[1-9]|[2-9][0-9])$ ]] || die "bad --python '$PYTHON': r1jax needs 3.11 or newer, e.g. 3.11"
[[ $EXTRAS =~ ^[a-z0-9]+(,[a-z0-9]+)*$ ]] || die "bad --extras '$EXTRAS': comma-separated extras such as tpu,hf"

py=python$PYTHON
apt="sudo apt-get -o DPkg::Lock::Timeout=600 -y -q"  # a fresh VM's unattended upgrades hold the lock a while
pip="$REMOTE_VENV/bin/pip install -q"
remote="set -e; if ! command -v $py >/dev/null; then sudo add-apt-repository -y ppa:deadsnakes/ppa"
remote+=" && $apt update && $apt install $py $py-venv; fi"
remote+="; $py -m venv $REMOTE_VENV; $pip -U pip"
remote+="; $pip -e \"\$HOME/r1jax[$EXTRAS]\" -f https://storage.googleapis.com/jax-releases/libtpu_releases.html"
remote+="; $REMOTE_VENV/bin/python -c 'import jax; print(jax.process_index(), jax.process_count(), jax.device_count())'"
ssh_all all "$remote"
