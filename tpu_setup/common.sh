# shellcheck shell=bash disable=SC2034
# (SC2034: the variables set here are read by the scripts that source this file.)
# Sourced by every tpu_setup script: flag parsing, validation and `run`, which prints a
# command instead of running it under --dry-run (so the scripts can be checked without a
# Google Cloud account; tests/test_tpu_setup.py compares the printed commands).
#
# Flags may also come from the environment, so a session can `export TPU_NAME=... TPU_ZONE=...`
# once: TPU_NAME, TPU_ZONE, TPU_PROJECT, TPU_ACCELERATOR.

set -euo pipefail

NAME=${TPU_NAME:-}
ZONE=${TPU_ZONE:-}
PROJECT=${TPU_PROJECT:-}
ACCELERATOR=${TPU_ACCELERATOR:-}
DRY_RUN=0
ARGS=()  # words after `--` (launch.sh's command)

# Where the code and its virtual environment live on every worker. The tildes are meant
# literally: the worker's shell expands them to its own home.
# shellcheck disable=SC2088
REMOTE_DIR='~/r1jax'
# shellcheck disable=SC2088
REMOTE_VENV='~/r1jax-venv'
# shellcheck disable=SC2088
REMOTE_LOG='~/r1jax-run.log'
# shellcheck disable=SC2088
REMOTE_PID='~/r1jax-run.pid'

die() {
    echo "$(basename "$0"): $*" >&2
    exit 2
}

# quote WORD: the word as a shell would need it typed, quoted only when it must be, so that
# printed commands stay readable and can be pasted back into a shell.
quote() {
    if [[ $1 =~ ^[A-Za-z0-9_@%+=:,./-]+$ ]]; then
        printf '%s' "$1"
    else
        printf "'%s'" "${1//\'/\'\\\'\'}"
    fi
}

# run CMD ARG...: print it (dry run) or echo it to stderr and run it.
run() {
    local line="" word
    for word in "$@"; do
        if [[ $word =~ ^(--[a-z-]+=)(.*)$ ]]; then  # --command='...' reads better than '--command=...'
            line+="${line:+ }${BASH_REMATCH[1]}$(quote "${BASH_REMATCH[2]}")"
        else
            line+="${line:+ }$(quote "$word")"
        fi
    done
    if ((DRY_RUN)); then
        printf '%s\n' "$line"
    else
        printf '+ %s\n' "$line" >&2
        "$@"
    fi
}

# run_shell 'a | b': the same for a pipeline, printed verbatim and run by bash.
run_shell() {
    if ((DRY_RUN)); then
        printf '%s\n' "$1"
    else
        printf '+ %s\n' "$1" >&2
        bash -c "$1"
    fi
}

# parse_args USAGE ALLOWED_FLAGS... -- [COMMAND] "$@": sets the globals above and the script's
# own (SPOT, QUEUED, ...). A flag a script does not take is an error naming the ones it does.
# With COMMAND, the words after a `--` in "$@" go to ARGS (launch.sh); otherwise they are an error.
parse_args() {
    local usage=$1
    shift
    local allowed=()
    while [[ $1 != "--" ]]; do allowed+=("$1"); shift; done
    shift
    if [[ ${1:-} == "COMMAND" ]]; then allowed+=(--); shift; fi  # launch.sh: a command follows `--`
    while (($#)); do
        local flag=$1
        case $flag in
            -h | --help) echo "usage: $(basename "$0") $usage"; exit 0 ;;
            --)
                [[ " ${allowed[*]} " == *" -- "* ]] || die "unexpected arguments after '--': ${*:2}"
                shift; ARGS=("$@"); break ;;
            --*=*) set -- "${flag%%=*}" "${flag#*=}" "${@:2}"; continue ;;
        esac
        if [[ " ${allowed[*]} --dry-run " != *" $flag "* ]]; then
            die "unknown option '$flag'; valid options: ${allowed[*]} --dry-run"
        fi
        case $flag in
            --dry-run) DRY_RUN=1 ;;
            --spot) SPOT=1 ;;
            --preemptible) PREEMPTIBLE=1 ;;
            --queued) QUEUED=1 ;;
            --foreground) FOREGROUND=1 ;;
            *)
                (($# >= 2)) || die "option $flag needs a value"
                case $flag in
                    --name) NAME=$2 ;;
                    --zone) ZONE=$2 ;;
                    --project) PROJECT=$2 ;;
                    --accelerator) ACCELERATOR=$2 ;;
                    --version) VERSION=$2 ;;
                    --valid-until) VALID_UNTIL=$2 ;;
                    --python) PYTHON=$2 ;;
                    --extras) EXTRAS=$2 ;;
                    --src) SRC=$2 ;;
                    --worker) WORKER=$2 ;;
                    --lines) TAIL_LINES=$2 ;;
                    --bucket) BUCKET=$2 ;;
                    *) die "internal error: unhandled option $flag" ;;
                esac
                shift ;;
        esac
        shift
    done
}

check_name() {
    [[ -n $NAME ]] || die "--name is required (or set TPU_NAME)"
    [[ $NAME =~ ^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$ ]] ||
        die "bad TPU name '$NAME': lowercase letters, digits and '-', starting with a letter, at most 63 characters"
}

check_zone() {
    [[ -n $ZONE ]] || die "--zone is required (or set TPU_ZONE), e.g. us-central2-b"
    [[ $ZONE =~ ^[a-z]+-[a-z]+[0-9]+-[a-z]$ ]] ||
        die "bad zone '$ZONE': expected REGION-LETTER such as us-central2-b or europe-west4-a"
}

check_project() {
    [[ -z $PROJECT || $PROJECT =~ ^[a-z][-a-z0-9.:]{4,61}[a-z0-9]$ ]] ||
        die "bad project id '$PROJECT': lowercase letters, digits and '-', 6 to 30 characters"
}

# check_accelerator: sets FAMILY (v4, v5litepod, v5p, v6e) and the default RUNTIME for it.
check_accelerator() {
    [[ -n $ACCELERATOR ]] || die "--accelerator is required, e.g. v4-8, v5litepod-16, v5p-8, v6e-8"
    local bad="unknown accelerator type '$ACCELERATOR'; valid: v4-N and v5p-N (N TensorCores, a multiple of 8:"
    bad+=" v4-8, v4-32, v5p-128) or v5litepod-N and v6e-N (N chips: 1, 4, 8, 16, 32, 64, 128, 256)"
    [[ $ACCELERATOR =~ ^(v4|v5litepod|v5p|v6e)-([0-9]+)$ ]] || die "$bad (v5e slices are named v5litepod-N)"
    FAMILY=${BASH_REMATCH[1]}
    local n=$((10#${BASH_REMATCH[2]}))
    case $FAMILY in
        v4 | v5p) ((n >= 8 && n % 8 == 0)) || die "$bad" ;;
        *) [[ " 1 4 8 16 32 64 128 256 " == *" $n "* ]] || die "$bad" ;;
    esac
    # The TPU software versions Google names for JAX (cloud.google.com/tpu/docs/runtimes).
    case $FAMILY in
        v4) RUNTIME=tpu-ubuntu2204-base ;;
        v5litepod) RUNTIME=v2-alpha-tpuv5-lite ;;
        v5p) RUNTIME=v2-alpha-tpuv5 ;;
        v6e) RUNTIME=v2-alpha-tpuv6e ;;
    esac
}

# Flags every gcloud call gets: where the TPU is.
where() {
    WHERE=("--zone=$ZONE")
    if [[ -n $PROJECT ]]; then WHERE+=("--project=$PROJECT"); fi
}

# ssh_all WORKER COMMAND: run a shell command on one worker or on all of them at once.
ssh_all() {
    where
    run gcloud compute tpus tpu-vm ssh "$NAME" "${WHERE[@]}" "--worker=$1" "--command=$2"
}
