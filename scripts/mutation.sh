#!/usr/bin/env bash
# Mutation testing of the run-id encoding (definition/_canonical.py) and the filter
# evaluator (query/_eval.py) with mutmut, against their fast tests (no database).
# Configuration: [tool.mutmut] in pyproject.toml.  See docs/contributing.md.
#
# Usage: scripts/mutation.sh [canonical|eval|all] [--jobs N] [--keep] [--show]
#   canonical / eval / all  which module's mutants to run (default: all)
#   --jobs N   parallel test processes (default 1: the tests are CPU-bound)
#   --keep     reuse mutants/ from an earlier run (mutmut reruns only what changed)
#   --show     print the diff of every surviving mutant
# Prints the score of each module: killed (timeouts count as killed) / mutants.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

target=all
jobs=1
keep=0
show=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        canonical|eval|all) target=$1 ;;
        --jobs) jobs=$2; shift ;;
        --keep) keep=1 ;;
        --show) show=1 ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1 (see $0 --help)" >&2; exit 2 ;;
    esac
    shift
done

if [[ ! -x .venv/bin/mutmut ]]; then
    echo "mutmut is not installed in .venv: run  .venv/bin/pip install -e '.[dev]'" >&2
    exit 2
fi

declare -A pattern=(
    [canonical]='metalab.definition._canonical.*'
    [eval]='metalab.query._eval.*'
)
names=()
if [[ $target != all ]]; then
    names=("${pattern[$target]}")
fi

if [[ $keep == 0 ]]; then
    rm -rf mutants
fi
# mutmut's own exit status is not a verdict (survivors are counted below); its
# progress display goes to a log file unless the output is a terminal
mkdir -p mutants
if [[ -t 1 ]]; then
    .venv/bin/mutmut run --max-children "$jobs" "${names[@]}" || true
else
    echo "running mutmut (progress in mutants/mutmut-run.log)"
    .venv/bin/mutmut run --max-children "$jobs" "${names[@]}" > mutants/mutmut-run.log 2>&1 || true
fi

results=$(.venv/bin/mutmut results --all true)
export RESULTS=$results TARGET=$target
.venv/bin/python - <<'PY'
import os
from collections import Counter

modules = {"canonical": "metalab.definition._canonical.",
           "eval": "metalab.query._eval."}
wanted = list(modules) if os.environ["TARGET"] == "all" else [os.environ["TARGET"]]
rows = [line.strip().rsplit(": ", 1) for line in os.environ["RESULTS"].splitlines()
        if ": " in line]
for key in wanted:
    counts = Counter(status for name, status in rows if name.startswith(modules[key]))
    total = sum(counts.values())
    killed = counts["killed"] + counts["timeout"]
    score = f"{100 * killed / total:.1f}%" if total else "n/a"
    detail = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    print(f"{key}: {killed}/{total} killed ({score}); {detail}")
    for name, status in rows:
        if name.startswith(modules[key]) and status not in ("killed", "timeout"):
            print(f"    {status}: {name}")
PY

if [[ $show == 1 ]]; then
    while read -r name status; do
        name=${name%:}
        case "$status" in killed|timeout) continue ;; esac
        case "$target:$name" in
            all:*|canonical:metalab.definition._canonical.*|eval:metalab.query._eval.*)
                .venv/bin/mutmut show "$name" ;;
        esac
    done <<< "$results"
fi
