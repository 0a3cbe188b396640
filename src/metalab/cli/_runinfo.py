"""Finding one run by a prefix of its id, and the provenance lines of ``runs show``."""

from __future__ import annotations

from typing import Any

from metalab._errors import NotFoundError, ValidationError
from metalab.model import Provenance

__all__ = ["find_run", "provenance_lines"]

#: candidates named in the message of an ambiguous id prefix
MAX_CANDIDATES = 10
#: characters of a commit id shown by ``runs show``
SHORT_COMMIT = 12


def find_run(store: Any, text: str, locator: str) -> dict[str, Any]:
    """The run whose id is ``text``, or the one run whose id starts with it.

    Returns its projected document (``run_id``, ``experiment_id``, ``status``
    as readers see it, ``started_at``).  An exact id wins over longer ids
    it is a prefix of.  Searches the store's experiment, or every experiment
    of an unscoped store.

    Raises:
        NotFoundError: no run id starts with ``text``.
        ValidationError: an empty ``text``, or several runs match (the
            message lists them, up to :data:`MAX_CANDIDATES`).
    """
    from metalab.query import Field
    from metalab.query._ast import StartsWith

    if not isinstance(text, str) or not text.strip():
        raise ValidationError("give a run id, or the first characters of one")
    found = store.query_runs(None, StartsWith(Field("run_id"), text), columns=["run_id"])
    exact = [d for d in found if d.get("run_id") == text]
    hits = exact or found
    if not hits:
        raise NotFoundError(
            f"no run {text!r} (no run id starts with it) in {locator}; "
            f"list runs with: metalab runs ls --store {locator}"
        )
    if len(hits) > 1:
        listed = [f"{d['run_id']} ({d['experiment_id']}, {d['status']})"
                  for d in hits[:MAX_CANDIDATES]]
        more = f" and {len(hits) - MAX_CANDIDATES} more" if len(hits) > MAX_CANDIDATES else ""
        raise ValidationError(
            f"{text!r} matches {len(hits)} runs: {', '.join(listed)}{more}; give more "
            "characters of the id (or --experiment)"
        )
    return hits[0]


def provenance_lines(prov: Provenance) -> list[str]:
    """What ``runs show`` prints of a run's provenance (without the heading)."""
    lines = []
    if prov.operation_ref:
        code = f" (code {prov.code_hash})" if prov.code_hash else ""
        lines.append(f"operation: {prov.operation_ref}{code}")
    where = ", ".join(x for x in (prov.executor, prov.worker_id, prov.host) if x)
    if where:
        lines.append(f"ran on: {where}")
    versions = ", ".join(f"{k} {v}" for k, v in (("python", prov.python_version),
                                                 ("metalab", prov.metalab_version)) if v)
    if versions:
        lines.append(f"versions: {versions}")
    git = prov.git
    if git.get("commit"):
        flag = git.get("dirty")
        dirty = ("dirty" if flag else "clean") if isinstance(flag, bool) else (
            f"dirty unknown: {git.get('dirty_unknown', '?')}")
        branch = f"branch {git['branch']}, " if git.get("branch") else "detached, "
        lines.append(f"git: {str(git['commit'])[:SHORT_COMMIT]} ({branch}{dirty}) in {git.get('root', '?')}")
    elif git.get("missing"):
        lines.append(f"git: none ({git['missing']})")
    else:
        lines.append("git: not recorded")
    packages = prov.packages
    if "missing" in packages:
        lines.append(f"packages: unknown ({packages['missing']})")
    elif packages:
        lines.append("packages: " + ", ".join(f"{k} {v}" for k, v in sorted(packages.items())))
    elif git:  # collected: the operation imports only the standard library
        lines.append("packages: none besides the standard library")
    else:
        lines.append("packages: not recorded")
    return lines
