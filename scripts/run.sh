#!/usr/bin/env bash
# `make run`: the whole of Call Journal with one command.
#
#  - With a working Docker engine (`docker info` succeeds): docker compose builds the
#    image and starts PostgreSQL, NSQ, SeaweedFS and the daemons (docker/compose.yaml).
#  - Otherwise natively, on embedded defaults: the virtualenv (made if needed), then
#    `cj dev` — api + encoder + agent in one process, a private PostgreSQL under ./var
#    (unless CJ_DATABASE_URL is set), the agent watching ./var/spool.
#
# Arguments go to `docker compose up` or to `cj dev` (e.g. --rest-port 8081; see
# `.venv/bin/cj dev --help`). Environment:
#   CJ_DEV_MODE=auto|docker|native   force a mode (default auto)
#   CJ_DEV_SKIP_INSTALL=1            native: use the virtualenv as it is (tests)
#   VENV=.venv                       native: the virtualenv to use
set -euo pipefail
cd "$(dirname "$0")/.."

mode="${CJ_DEV_MODE:-auto}"
case "$mode" in
    auto | docker | native) ;;
    *)
        echo "run.sh: CJ_DEV_MODE must be auto, docker or native, not '$mode'" >&2
        exit 2
        ;;
esac

docker_works() {
    command -v docker >/dev/null 2>&1 || return 1
    # An engine that does not answer within 20 s is as good as none.
    if command -v timeout >/dev/null 2>&1; then
        timeout 20 docker info >/dev/null 2>&1
    else
        docker info >/dev/null 2>&1
    fi
}

if [ "$mode" = auto ]; then
    if docker_works; then mode=docker; else mode=native; fi
fi

if [ "$mode" = docker ]; then
    if ! docker compose version >/dev/null 2>&1; then
        echo "run.sh: the Docker engine answers but 'docker compose' (v2) is missing;" \
             "install the compose plugin, or run natively: CJ_DEV_MODE=native make run" >&2
        exit 1
    fi
    # The agent container runs as the owner of docker/spool, so it may move files there.
    export CALLJOURNAL_UID="${CALLJOURNAL_UID:-$(id -u)}"
    export CALLJOURNAL_GID="${CALLJOURNAL_GID:-$(id -g)}"
    echo "run.sh: Docker engine found: docker compose -f docker/compose.yaml up --build" >&2
    exec docker compose -f docker/compose.yaml up --build "$@"
fi

venv="${VENV:-.venv}"
if [ -z "${CJ_DEV_SKIP_INSTALL:-}" ]; then
    "${MAKE:-make}" --no-print-directory venv VENV="$venv"
fi
echo "run.sh: native mode: cj dev (api + encoder + agent; data under ./var)" >&2
exec "$venv/bin/cj" dev "$@"
