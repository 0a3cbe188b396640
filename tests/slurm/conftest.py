"""The SLURM tests run against the real cluster started by scripts/slurm_up.sh.

In CI (``CI=true``) a missing cluster FAILS the tests; elsewhere they skip
with the reason when ``SLURM_CONF`` is not set.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest


@pytest.fixture(scope="session")
def slurm_cluster() -> str:
    conf = os.environ.get("SLURM_CONF", "")
    problem = ""
    if not conf:
        problem = "SLURM_CONF is not set (start a cluster with scripts/slurm_up.sh and export SLURM_CONF)"
    elif not os.path.exists(conf):
        problem = f"SLURM_CONF={conf} does not exist (run scripts/slurm_up.sh)"
    elif shutil.which("sbatch") is None:
        problem = "sbatch is not installed (scripts/slurm_up.sh installs slurm-wlm)"
    else:
        proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
        if proc.returncode != 0 or not any(s in proc.stdout for s in ("idle", "mix", "alloc")):
            problem = f"the SLURM node is not up: {proc.stdout.strip()} {proc.stderr.strip()}"
    if problem:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"SLURM tests need the local cluster in CI: {problem}", pytrace=False)
        pytest.skip(f"no SLURM cluster: {problem}")
    return conf


@pytest.fixture(autouse=True)
def fast_heartbeats(monkeypatch: pytest.MonkeyPatch, slurm_cluster: str) -> None:
    monkeypatch.setenv("METALAB_HEARTBEAT_INTERVAL", "0.2")
    monkeypatch.setenv("METALAB_LOST_AFTER", "2")
