"""The warning of :func:`~metalab.run` when one experiment id is run with another context."""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["warn_context_change"]

log = logging.getLogger("metalab.execution")

#: earlier contexts named in the warning (the latest ones; the rest are counted)
_NAMED_CONTEXTS = 3
#: characters of a context fingerprint shown in the warning
_SHOWN_FP = 12


def warn_context_change(store: Any, experiment: Any) -> None:
    """Warn if earlier submissions of ``experiment``'s id used another context.

    Run ids include the context fingerprint, so such a submission adds a
    second set of runs under the same ``name:version`` instead of resuming
    the first: listings and aggregates then mix both (e.g. 6 runs per
    parameter case where there are 3 seed replicates).  Reads the stored
    experiment manifests (one per submission); never raises (an unreadable
    manifest folder is logged and the check skipped).  Thread-safe.
    """
    experiment_id = experiment.experiment_id
    try:
        manifests = store.list_experiment_manifests(experiment_id)
    except Exception as exc:
        log.warning("could not read the earlier manifests of %s: %s", experiment_id, exc)
        return
    current = experiment.context_fingerprint
    others: dict[str, str] = {}  # fingerprint -> when it was last submitted
    for ts, manifest in manifests:
        fp = manifest.get("context_fingerprint") if isinstance(manifest, dict) else None
        if isinstance(fp, str) and fp and fp != current:
            others[fp] = manifest.get("submitted_at") or ts.isoformat()
    if not others:
        return
    named = list(others.items())[-_NAMED_CONTEXTS:]
    earlier = ", ".join(f"{fp[:_SHOWN_FP]} (submitted {when})" for fp, when in named)
    more = f" and {len(others) - _NAMED_CONTEXTS} more" if len(others) > _NAMED_CONTEXTS else ""
    log.warning(
        "experiment %s was submitted before with another context (context fingerprint %s%s; "
        "now %s). Run ids include the context, so this adds a second set of runs under the "
        "same id instead of resuming: loaded results, tables and aggregates mix both sets. "
        "Tell them apart by the 'context_fingerprint' column of Results.to_dataframe(), or "
        "give the experiment a new version when its context changes",
        experiment_id, earlier, more, current[:_SHOWN_FP],
    )
