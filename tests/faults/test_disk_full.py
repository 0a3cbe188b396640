"""Disk full (ENOSPC) on a small tmpfs, then a resume once space is freed (fault scoreboard).

A sweep writing artifacts runs on a tmpfs too small for it, in a fresh
interpreter (so its stderr is exactly what a user sees, with Python's default
logging).  Checked: the user gets one clear message naming the folder and
"No space left on device" and no traceback; no empty claim or lock file is
left behind; after the tmpfs is grown, a resume completes every run and its
handle's counts match the files.  Needs root (``mount``); skipped with the
reason otherwise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SRC = HERE.parent.parent / "src"
OPS = HERE.parent / "execution"

SCRIPT = """
import sys
sys.path[:0] = [{src!r}, {ops!r}]
import liveness_ops
from metalab.definition import Experiment, grid, seeds
from metalab.execution import ProcessExecutor, SerialExecutor, run
exp = Experiment(name="full", version="1", context={{}}, operation=liveness_ops.writer,
                 params=grid(x=list(range(20)), kb=[48]), seeds=seeds(0, 1))
if __name__ == "__main__":
    executor = ProcessExecutor(2) if {executor!r} == "process" else SerialExecutor()
    handle = run(exp, store={root!r}, executor=executor)
    handle.wait()
    st = handle.status
    print("STATUS", st.success, st.skipped, st.failed, st.lost, st.cancelled,
          getattr(st, "elsewhere", 0), st.done,
          st.total, flush=True)
"""


@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("the disk-full test mounts a small tmpfs, which needs root")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=640k", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip() or proc.returncode}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _launch(root: Path, executor: str) -> tuple[list[int], str]:
    code = SCRIPT.format(src=str(SRC), ops=str(OPS), root=str(root), executor=executor)
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (line,) = [ln for ln in proc.stdout.splitlines() if ln.startswith("STATUS")]
    return [int(v) for v in line.split()[1:]], proc.stderr


def _records(folder: Path) -> tuple[dict[str, str], int]:
    """run id -> status from the raw files; and how many record files do not parse."""
    out: dict[str, str] = {}
    corrupt = 0
    for p in (folder / "runs").glob("*.json"):
        try:
            doc = json.loads(p.read_text())
            out[doc["run_id"]] = doc["status"]
        except (ValueError, KeyError):
            corrupt += 1
    return out, corrupt


def _debris(root: Path) -> list[str]:
    """Claim and lock files left behind (any claim after a sweep ended, and every empty lock)."""
    found = []
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath, name)
            if name.endswith((".claim", ".takeover")) or (
                (name.endswith(".lock") or name == "lock") and path.stat().st_size == 0
            ):
                found.append(str(path.relative_to(root)))
    return sorted(found)


@pytest.mark.parametrize("executor", ["serial", "process"])
def test_disk_full_says_so_once_and_a_resume_completes(small_disk, scoreboard, executor):
    root = small_disk / "store"
    folder = root / "full_1"
    problems: list[str] = []
    misreported = 0

    status, err = _launch(root, executor)
    success, skipped, failed, lost, _cancelled, elsewhere, done, total = status
    records, corrupt = _records(folder)
    if success == total:
        pytest.fail("the tmpfs did not fill up; nothing was tested (make the sweep bigger)")
    full_lines = [ln for ln in err.splitlines() if "No space left on device" in ln]
    if len(full_lines) != 1 or str(folder) not in full_lines[0]:
        misreported += 1
        problems.append(f"expected one message naming {folder} and the full disk, got:\n{err}")
    if "Traceback" in err:
        misreported += 1
        problems.append(f"a traceback reached the terminal:\n{err}")
    ok_files = sum(1 for s in records.values() if s == "success")
    if done != total or elsewhere or skipped or success != ok_files:
        misreported += 1
        problems.append(f"the first handle says {status}; the files hold {ok_files} successes")
    left = _debris(root)
    if left:
        problems.append(f"claim or lock files left behind: {left}")

    # free space, resume at once
    grow = subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)],
                          capture_output=True, text=True)
    assert grow.returncode == 0, grow.stderr
    status2, err2 = _launch(root, executor)
    success2, skipped2, failed2, lost2, _c2, elsewhere2, done2, total2 = status2
    records2, corrupt2 = _records(folder)
    lost_runs = total2 - sum(1 for s in records2.values() if s == "success")
    if (success2, skipped2, failed2, lost2, elsewhere2, done2) != (
        total2 - ok_files, ok_files, 0, 0, 0, total2
    ):
        misreported += 1
        problems.append(f"resume counts {status2} do not match the files ({ok_files} succeeded "
                        "before)")
    if "Traceback" in err2 or "No space" in err2:
        misreported += 1
        problems.append(f"the resume printed:\n{err2}")
    left2 = _debris(root)
    if left2:
        problems.append(f"claim or lock files left after the resume: {left2}")
    scoreboard.append(
        f"disk full ({executor}): tried 1 / lost {lost_runs} / corrupt {corrupt + corrupt2} / "
        f"misreported {misreported} (first sweep: {ok_files} of {total} succeeded, "
        f"{failed} failed, {lost} final records unwritten; debris left {len(left) + len(left2)})"
    )
    assert not problems and lost_runs == 0 and corrupt + corrupt2 == 0, "\n\n".join(problems)
