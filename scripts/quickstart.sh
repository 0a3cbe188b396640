#!/usr/bin/env bash
# Set up the environment, then run examples/quickstart.py and print its results table.
#
# The experiment is written to ./experiments inside a fresh temporary folder
# (printed at the end); set METALAB_QUICKSTART_DIR to use another folder.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"

WORKDIR="${METALAB_QUICKSTART_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/metalab-quickstart.XXXXXX")}"
mkdir -p "$WORKDIR"
cd "$WORKDIR"
"$ROOT/.venv/bin/python" "$ROOT/examples/quickstart.py"
echo
echo "Files written under: $WORKDIR/experiments"
