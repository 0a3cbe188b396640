#!/usr/bin/env bash
# Set up the environment, then run the whole check suite: ruff, mypy, pytest.
# Extra arguments go to pytest (e.g. scripts/test.sh -k store -x).
# Exits non-zero if any step fails; pytest collecting no tests (exit 5) is a failure.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
./scripts/setup.sh
BIN="$ROOT/.venv/bin"

# ---------------------------------------------------------------- services
# Services the tests need (PostgreSQL, SLURM, ...) are started here and
# stopped by the EXIT trap, whatever happens.  Each start function appends
# its stop command to CLEANUP.
CLEANUP=()
cleanup() {
    local i
    for ((i = ${#CLEANUP[@]} - 1; i >= 0; i--)); do
        eval "${CLEANUP[i]}" || true
    done
}
trap cleanup EXIT

ensure_postgres() {
    # The PostgreSQL tests start their own throwaway server (tests/conftest.py,
    # metalab.services); they only need the server binaries on this machine.
    if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
        echo "==> installing PostgreSQL server binaries (apt-get install postgresql)" >&2
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        export DEBIAN_FRONTEND=noninteractive
        $sudo apt-get update -q
        $sudo apt-get install -y -q --no-install-recommends postgresql
    fi
}

ensure_chromium() {
    # The UI's end-to-end tests (tests/ui/test_e2e.py) drive Debian's headless Chromium
    # through its chromedriver; never a browser download.
    if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
        echo "==> installing Chromium and its driver (apt-get install chromium chromium-driver)" >&2
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        export DEBIAN_FRONTEND=noninteractive
        $sudo apt-get update -q
        $sudo apt-get install -y -q --no-install-recommends chromium chromium-driver
    fi
}

start_services() {
    ensure_postgres
    ensure_chromium
    # a real single-node SLURM cluster for tests/slurm (installs slurm-wlm + munge if missing);
    # one already running (e.g. from scripts/slurm_up.sh by hand) is reused and left running
    local conf="${SLURM_CI_DIR:-/tmp/slurmci}/slurm.conf"
    if [ -z "${SLURM_CONF:-}" ] && [ -f "$conf" ] && SLURM_CONF="$conf" sinfo -h >/dev/null 2>&1; then
        SLURM_CONF="$conf"
    elif [ -z "${SLURM_CONF:-}" ] || ! sinfo -h >/dev/null 2>&1; then
        echo "==> starting a local SLURM cluster (scripts/slurm_up.sh)" >&2
        CLEANUP+=("\"$ROOT/scripts/slurm_down.sh\" >/dev/null 2>&1")
        local line=""
        line="$(SLURM_CI_CPUS="${SLURM_CI_CPUS:-10}" "$ROOT/scripts/slurm_up.sh" | tail -n 1)" \
            || echo "scripts/slurm_up.sh failed: the SLURM tests will fail" >&2
        case "$line" in "export SLURM_CONF="*) eval "$line" ;; esac
    fi
    export SLURM_CONF
}
start_services

# ------------------------------------------------------------------ checks
failed=()
run_step() {
    local name="$1"
    shift
    echo "==> $name" >&2
    local rc=0
    "$@" || rc=$?
    if [ "$name" = pytest ] && [ "$rc" -eq 5 ]; then
        echo "pytest collected no tests" >&2
    fi
    if [ "$rc" -ne 0 ]; then
        failed+=("$name (exit $rc)")
    fi
}

run_step ruff "$BIN/ruff" check src tests
run_step mypy "$BIN/mypy"
run_step pytest "$BIN/pytest" -q "$@"

if [ ${#failed[@]} -gt 0 ]; then
    echo "FAILED: ${failed[*]}" >&2
    exit 1
fi
echo "all checks passed" >&2
