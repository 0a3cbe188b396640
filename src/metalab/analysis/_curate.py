"""Tags and notes of runs after the fact, from :class:`Results` and :class:`Run`.

Thin wrappers over :meth:`metalab.store.Store.annotate_runs`: the change is
written to the store (every later read and query sees it at once); the
:class:`Results` it was made from stays the snapshot it was (load the results
again to see the new tags in it), while a :class:`Run` shows its new tags.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from metalab.analysis._context import ResultsContext

__all__ = ["annotate"]


def annotate(ctx: ResultsContext, experiment_ids: Iterable[str], run_ids: Iterable[str], *,
             add: Iterable[str] = (), remove: Iterable[str] = (), note: Any = ...) -> list[str]:
    """Annotate the runs (``run_ids[i]`` of ``experiment_ids[i]``) through the
    stores of ``ctx``, one call per experiment; returns the run ids changed.

    Raises what :meth:`~metalab.store.Store.annotate_runs` raises (tags and
    the note are checked before anything is written).
    """
    add, remove = tuple(add), tuple(remove)
    groups: dict[str, list[str]] = {}
    for eid, rid in zip(experiment_ids, run_ids, strict=True):
        groups.setdefault(eid, []).append(rid)
    written: list[str] = []
    for eid, ids in sorted(groups.items()):
        written += ctx.store_for(eid).annotate_runs(ids, add_tags=add, remove_tags=remove,
                                                    note=note)
    return written
