"""Code provenance of a launch: the git state of the operation's repository and the
versions of the packages its module imports.

:func:`code_provenance` is called once per launch (``metalab.run``, a SLURM
task, ``metalab runs rerun``), never per run; each run's record carries the
result in ``provenance.git`` and ``provenance.packages``.  It never raises:
what cannot be found is recorded with the reason (``{"missing": "..."}``),
because a run must not fail over its provenance.

Git: the repository is the first folder holding ``.git`` (a folder, or the
``gitdir:`` file of a worktree or submodule) above the operation's source
file.  The commit and branch are read from ``.git`` directly (no git binary
needed); the dirty flag (a tracked file differs from the commit; untracked
files do not count) asks ``git status`` with a timeout and is ``None``, with
the reason in ``dirty_unknown``, when git is missing, slow or refuses.

Packages: the top-level modules the operation's module imports (its import
statements, at any depth, and the modules and objects in its namespace),
mapped to their installed distributions (``importlib.metadata``); standard
library modules and modules that belong to no distribution are left out.

Thread-safe (no shared state but a per-process cache of the module name ->
distribution table, consulted only for import names that are not
distribution names).
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata as metadata
import inspect
import logging
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = ["GIT_TIMEOUT_S", "code_provenance", "git_state", "package_versions"]

log = logging.getLogger("metalab.execution")

#: seconds ``git status`` may take before the dirty flag is recorded as unknown
GIT_TIMEOUT_S = 10.0
#: a git object id: 40 hex digits (SHA-1) or 64 (SHA-256)
_OID_LENGTHS = (40, 64)
#: characters of git's error output kept in a reason
_MAX_REASON = 200


def code_provenance(operation: Any) -> dict[str, Any]:
    """``{"git": {...}, "packages": {...}}`` of ``operation`` (an Operation or function).

    Never raises (see the module doc).
    """
    func = getattr(operation, "func", operation)
    module = sys.modules.get(getattr(func, "__module__", None) or "")
    source = _source_file(func, module)
    try:
        git = git_state(source) if source else {
            "missing": "the operation has no source file (defined in an interactive session "
                       "or a notebook)"}
    except Exception as exc:  # a run must not fail over provenance: keep the reason
        log.debug("git provenance failed", exc_info=True)
        git = {"missing": f"reading the git state failed: {exc!r}"[:_MAX_REASON]}
    try:
        packages = package_versions(module, source)
    except Exception as exc:  # (as above)
        log.debug("package provenance failed", exc_info=True)
        packages = {"missing": f"finding the package versions failed: {exc!r}"[:_MAX_REASON]}
    return {"git": git, "packages": packages}


def _source_file(func: Any, module: ModuleType | None) -> str | None:
    try:
        path = inspect.getsourcefile(func)
    except TypeError:
        path = None
    if path is None and module is not None:
        path = getattr(module, "__file__", None)
    return os.path.abspath(path) if path and os.path.isfile(path) else None


# ------------------------------------------------------------------ git
def _find_git(start: Path) -> tuple[Path, Path] | None:
    """(work tree root, git dir) of the repository holding ``start``, or None."""
    for folder in (start, *start.parents):
        dotgit = folder / ".git"
        if dotgit.is_dir():
            return folder, dotgit
        if dotgit.is_file():
            text = dotgit.read_text(encoding="utf-8", errors="replace").strip()
            if text.startswith("gitdir:"):
                return folder, (folder / text[len("gitdir:"):].strip()).resolve()
    return None


def _read_ref(git_dir: Path, ref: str) -> str | None:
    """The object id ``ref`` (``refs/heads/main``) points at, or None if it has none."""
    common = git_dir
    commondir = git_dir / "commondir"
    if commondir.is_file():
        common = (git_dir / commondir.read_text(encoding="utf-8").strip()).resolve()
    for base in (git_dir, common):
        loose = base / ref
        if loose.is_file():
            return loose.read_text(encoding="utf-8").strip() or None
    packed = common / "packed-refs"
    if packed.is_file():
        for line in packed.read_text(encoding="utf-8", errors="replace").splitlines():
            oid, _, name = line.partition(" ")
            if name == ref and len(oid) in _OID_LENGTHS:
                return oid
    return None


def git_state(source_file: str) -> dict[str, Any]:
    """The git state of the repository holding ``source_file``.

    ``{"commit", "branch" (None when detached), "dirty" (bool or None),
    "root"}`` plus ``"dirty_unknown"`` (why) when ``dirty`` is None; or
    ``{"missing": why}`` when there is no repository or no commit.

    Raises:
        OSError: a file of ``.git`` cannot be read.
    """
    found = _find_git(Path(source_file).parent)
    if found is None:
        return {"missing": f"no git repository holds {source_file}"}
    root, git_dir = found
    head = (git_dir / "HEAD").read_text(encoding="utf-8").strip()
    branch: str | None = None
    if head.startswith("ref:"):
        ref = head[len("ref:"):].strip()
        branch = ref.removeprefix("refs/heads/")
        commit = _read_ref(git_dir, ref)
        if commit is None:
            return {"missing": f"branch {branch!r} of {root} has no commit yet"}
    else:
        commit = head
    out: dict[str, Any] = {"commit": commit, "branch": branch, "root": str(root)}
    out["dirty"], reason = _dirty(root)
    if reason:
        out["dirty_unknown"] = reason
    return out


def _dirty(root: Path) -> tuple[bool | None, str]:
    """Whether a tracked file of ``root`` differs from the commit, or (None, why not known)."""
    # GIT_OPTIONAL_LOCKS=0: git status must not take the index lock from the user's own git
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}
    try:
        done = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, timeout=GIT_TIMEOUT_S, env=env, check=False,
        )
    except FileNotFoundError:
        return None, "git is not installed (the commit was read from .git)"
    except subprocess.TimeoutExpired:
        return None, f"git status took longer than {GIT_TIMEOUT_S:g} s"
    except OSError as exc:
        return None, f"git could not be started: {exc}"[:_MAX_REASON]
    if done.returncode != 0:
        why = done.stderr.decode("utf-8", "replace").strip().splitlines()
        return None, f"git status failed: {why[0] if why else done.returncode}"[:_MAX_REASON]
    return bool(done.stdout.strip()), ""


# ------------------------------------------------------------- packages
def _imported_names(module: ModuleType | None, source_file: str | None) -> set[str]:
    """Top-level names of the modules ``module`` imports (statements and namespace)."""
    names: set[str] = set()
    if module is not None:
        own = (getattr(module, "__name__", "") or "").partition(".")[0]
        if own and own != "__main__":
            names.add(own)
        for value in list(vars(module).values()):
            if isinstance(value, ModuleType):
                names.add(value.__name__.partition(".")[0])
            elif isinstance(mod := getattr(value, "__module__", None), str):
                names.add(mod.partition(".")[0])
    if source_file:
        try:
            tree = ast.parse(Path(source_file).read_bytes(), filename=source_file)
        except (OSError, SyntaxError, ValueError) as exc:
            log.debug("cannot parse %s for its imports: %s", source_file, exc)
        else:
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names.update(a.name.partition(".")[0] for a in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    names.add(node.module.partition(".")[0])
    return {n for n in names if n and n not in sys.stdlib_module_names and n != "builtins"}


@functools.cache
def _distribution_table() -> Mapping[str, list[str]]:
    """Top-level module name -> distribution names (a scan of every installed one)."""
    return metadata.packages_distributions()


def _distributions_of(name: str) -> list[str]:
    try:
        metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return list(_distribution_table().get(name, ()))
    return [name]


def package_versions(module: ModuleType | None, source_file: str | None) -> dict[str, str]:
    """``{distribution: version}`` of the packages ``module`` imports (see the module doc)."""
    out: dict[str, str] = {}
    for name in sorted(_imported_names(module, source_file)):
        for dist in _distributions_of(name):
            try:
                found = metadata.distribution(dist)
            except metadata.PackageNotFoundError:
                continue  # (in the cached table, uninstalled since)
            out[found.metadata["Name"] or dist] = found.version
    return out
