#!/usr/bin/env bash
# Create a TPU VM or a multi-host pod slice (one VM per host, all created together).
#
#   tpu_setup/create.sh --name r1 --zone us-central2-b --accelerator v4-32 [--spot | --preemptible]
#   tpu_setup/create.sh --name r1 --zone us-east5-a --accelerator v5p-128 --queued --spot --valid-until 6h
#
# --queued asks through a queued resource: the request waits in line until the capacity is
# free instead of failing at once, which is how large or Spot slices are usually obtained.
# The queued resource and its node get the same name, so the other scripts work unchanged.
# --spot: cheaper, preemptible at any time; --preemptible: the older kind (v4 only), which
# also stops after 24 hours. A preempted run resumes from its last checkpoint when relaunched.
# shellcheck source=common.sh source-path=SCRIPTDIR
source "$(dirname "$0")/common.sh"

SPOT=0 PREEMPTIBLE=0 QUEUED=0 VERSION="" VALID_UNTIL=""
usage="--name NAME --zone ZONE --accelerator TYPE [--project ID] [--version RUNTIME]"
usage+=" [--spot | --preemptible] [--queued [--valid-until DURATION]] [--dry-run]"
parse_args "$usage" --name --zone --project --accelerator --version --spot --preemptible --queued --valid-until -- "$@"
check_name
check_zone
check_project
check_accelerator
((SPOT && PREEMPTIBLE)) && die "--spot and --preemptible exclude each other"
((PREEMPTIBLE)) && [[ $FAMILY != v4 ]] && die "--preemptible exists for v4 and older; use --spot for $FAMILY"
((PREEMPTIBLE && QUEUED)) && die "queued resources take --spot, not --preemptible"
[[ -n $VALID_UNTIL ]] && ! ((QUEUED)) && die "--valid-until only applies to --queued requests"
[[ -z $VALID_UNTIL || $VALID_UNTIL =~ ^[0-9]+[smhd]$ ]] ||
    die "bad --valid-until '$VALID_UNTIL': a duration such as 30m, 6h or 2d"
[[ -z $VERSION || $VERSION =~ ^[a-z0-9][-a-z0-9.]*$ ]] || die "bad --version '$VERSION'"
where
# The workers' service account gets the cloud-platform scope (its IAM roles still decide what it
# may do), so they can read and write the Cloud Storage bucket that holds checkpoints.
scopes=--scopes=https://www.googleapis.com/auth/cloud-platform

if ((QUEUED)); then
    cmd=(gcloud compute tpus queued-resources create "$NAME" "${WHERE[@]}" "--node-id=$NAME"
        "--accelerator-type=$ACCELERATOR" "--runtime-version=${VERSION:-$RUNTIME}" "$scopes")
    ((SPOT)) && cmd+=(--spot)
    [[ -n $VALID_UNTIL ]] && cmd+=("--valid-until-duration=$VALID_UNTIL")
else
    cmd=(gcloud compute tpus tpu-vm create "$NAME" "${WHERE[@]}"
        "--accelerator-type=$ACCELERATOR" "--version=${VERSION:-$RUNTIME}" "$scopes")
    ((SPOT)) && cmd+=(--spot)
    ((PREEMPTIBLE)) && cmd+=(--preemptible)
fi
run "${cmd[@]}"
if ((QUEUED && !DRY_RUN)); then
    echo "queued; watch it become ACTIVE with: gcloud compute tpus queued-resources describe $NAME --zone=$ZONE" >&2
fi
