#!/usr/bin/env bash
# Set up a development environment: .venv in the repo with metalab installed
# editable plus the dev tools (pytest, ruff, mypy, pandas, psycopg, ...).
#
# Idempotent: a second run reuses .venv and skips `pip install` when
# pyproject.toml has not changed (set METALAB_SETUP_FORCE=1 to reinstall).
# Works on a fresh Debian 12 machine as root or through sudo: it installs
# python3 / python3-venv with apt-get when they are missing.
#
# Environment: PYTHON (interpreter to build the venv from, default python3),
#              METALAB_VENV (venv folder, default <repo>/.venv).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${METALAB_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
STAMP="$VENV/.metalab-setup-stamp"

say() { echo "==> $*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        echo "error: '$*' needs root; run this script as root or install sudo" >&2
        return 1
    fi
}

apt_install() {
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "error: cannot install $* (no apt-get); install it with your package manager" >&2
        return 1
    fi
    say "installing $* with apt-get"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

python_ok() {
    command -v "$PYTHON" >/dev/null 2>&1 &&
        "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null
}

venv_ok() {
    [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -m pip --version >/dev/null 2>&1
}

# 1. a Python >= 3.11 interpreter
if ! python_ok; then
    apt_install python3
    python_ok || { echo "error: metalab needs Python >= 3.11 (set PYTHON=/path/to/python3.11)" >&2; exit 1; }
fi

# 2. the virtualenv (install python3-venv if `python -m venv` does not work)
if ! venv_ok; then
    rm -rf "$VENV"
    say "creating $VENV"
    if ! "$PYTHON" -m venv "$VENV" >/dev/null 2>&1; then
        rm -rf "$VENV"
        apt_install python3-venv
        "$PYTHON" -m venv "$VENV"
    fi
fi

# 3. pip + metalab (editable) + dev dependencies, skipped when already done
want="$(cat "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1) $("$VENV/bin/python" -V 2>&1)"
if [ "${METALAB_SETUP_FORCE:-0}" != "1" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] &&
    "$VENV/bin/python" -c 'import metalab, pytest' >/dev/null 2>&1; then
    say "environment up to date ($VENV)"
    exit 0
fi
say "upgrading pip"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
say "installing metalab[dev] (editable)"
(cd "$ROOT" && "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[dev]")
echo "$want" >"$STAMP"
say "ready: activate with 'source ${VENV#"$ROOT"/}/bin/activate'"
