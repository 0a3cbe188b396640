"""kill -9 trials of the fault scoreboard, shared by tests/faults and bench/bench_faults.py.

Each trial starts ``fault_launcher.py`` in its own session, waits for its
``ready`` line, kills the whole process group with SIGKILL at a random moment
(a seeded ``random.Random``, so a failing trial can be replayed), and at once
does what a user would do next: resume the sweep, query again, or export
again.  Then it reads the raw files (``json`` and ``hashlib``, never the
store's own readers) and counts, per trial:

* ``lost``: runs with no ``success`` record after the resume;
* ``corrupt``: files that do not parse, records not named after their run,
  artifacts whose bytes do not match their manifest, catalog answers that
  differ from the files, exported files that differ from their source;
* ``misreported``: counts of the resuming handle that differ from what the
  files and the execution counters show (a run counted done that was not
  executed, a run executed twice, ``skipped`` that had not succeeded, ...).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fault_ops import make_experiment

HERE = Path(__file__).resolve().parent
LAUNCHER = HERE / "fault_launcher.py"
#: seconds a resume or a query may take before the trial counts it as stuck
STUCK_AFTER_S = 30.0


@dataclasses.dataclass
class Tally:
    """Totals over trials, printed as one scoreboard line."""

    name: str
    tried: int = 0
    lost: int = 0
    corrupt: int = 0
    misreported: int = 0
    killed_mid_work: int = 0
    problems: list[str] = dataclasses.field(default_factory=list)

    def add(self, outcome: Outcome) -> None:
        self.tried += 1
        self.lost += outcome.lost
        self.corrupt += outcome.corrupt
        self.misreported += outcome.misreported
        self.killed_mid_work += int(outcome.killed_mid_work)
        self.problems.extend(f"seed {outcome.seed}: {p}" for p in outcome.problems)

    def line(self, kills: bool = True) -> str:
        """The scoreboard line; ``kills=False`` for trials that kill nothing."""
        line = (
            f"{self.name}: tried {self.tried} / lost {self.lost} / corrupt {self.corrupt} / "
            f"misreported {self.misreported}"
        )
        return f"{line} (killed mid-work {self.killed_mid_work})" if kills else line


@dataclasses.dataclass
class Outcome:
    seed: int
    lost: int = 0
    corrupt: int = 0
    misreported: int = 0
    killed_mid_work: bool = False
    problems: list[str] = dataclasses.field(default_factory=list)

    def problem(self, kind: str, text: str) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        self.problems.append(f"{kind}: {text}")


# ------------------------------------------------------------------ launching
def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), env.get("PYTHONPATH", "")) if p)
    return env


def launch_and_kill(
    args: list[str], rng: random.Random, window: float, started: Path | None = None
) -> bool:
    """Start the launcher, kill its process group ``uniform(0, window)`` s after ``ready``.

    With ``started`` (a folder the work fills, e.g. the counter of executions),
    the moment is counted from the first file appearing there instead, so the
    kill lands inside the work however long start-up took (process pools
    start slowly on a loaded machine); one trial in eight still kills during
    start-up.  Returns True if the launcher was still working when killed.
    """
    proc = subprocess.Popen(
        [sys.executable, str(LAUNCHER), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=_env(),
        start_new_session=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != b"ready":
        proc.kill()
        proc.wait()
        raise RuntimeError(f"the fault launcher did not start ({line!r}); run it by hand: {args}")
    if started is not None and rng.random() >= 1 / 8:
        deadline = time.monotonic() + STUCK_AFTER_S
        while time.monotonic() < deadline and proc.poll() is None and not any(started.iterdir()):
            time.sleep(0.005)
    time.sleep(rng.uniform(0.0, window))
    alive = proc.poll() is None
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    proc.stdout.close()
    _wait_group_gone(proc.pid)
    return alive


def _wait_group_gone(pgid: int, timeout: float = 10.0) -> None:
    """Wait until no live (non-zombie) process of the killed group is left."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        members = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path("/proc", entry, "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(entry)
        if not members:
            return
        time.sleep(0.02)


# ------------------------------------------------------------------ raw reads
def read_raw(folder: Path, out: Outcome) -> dict[str, dict[str, Any]]:
    """Run records of an experiment folder read with ``json``; corrupt files counted."""
    records: dict[str, dict[str, Any]] = {}
    runs = folder / "runs"
    if not runs.is_dir():
        return records
    for path in runs.iterdir():
        if path.name.startswith(".") or path.suffix != ".json":
            continue
        try:
            doc = json.loads(path.read_bytes())
        except (OSError, ValueError) as exc:
            out.problem("corrupt", f"{path} does not parse: {exc}")
            continue
        if not isinstance(doc, dict) or doc.get("run_id") != path.stem:
            out.problem("corrupt", f"{path} is not the record of run {path.stem}")
            continue
        records[path.stem] = doc
    return records


def check_files(folder: Path, records: dict[str, dict[str, Any]], out: Outcome) -> None:
    """Manifests, artifacts, data and derived files of finished runs parse and match."""
    for run_id, doc in records.items():
        if doc.get("status") != "success":
            continue
        art_dir = folder / "artifacts" / run_id
        try:
            manifest = json.loads((art_dir / "_manifest.json").read_bytes())
        except (OSError, ValueError) as exc:
            out.problem("corrupt", f"artifact manifest of {run_id}: {exc}")
            continue
        for entry in manifest:
            target = folder / entry["uri"]
            try:
                digest = hashlib.sha256(target.read_bytes()).hexdigest()
            except OSError as exc:
                out.problem("corrupt", f"artifact {target}: {exc}")
                continue
            if digest != entry["content_hash"]:
                out.problem("corrupt", f"artifact {target} does not match its manifest")
        for name in doc.get("data") or ():
            try:
                json.loads((folder / "results" / run_id / f"{name}.json").read_bytes())
            except (OSError, ValueError) as exc:
                out.problem("corrupt", f"data {name} of {run_id}: {exc}")


def executions(counter_dir: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for path in counter_dir.iterdir():
        run_id = path.name.split(".", 1)[0]
        counts[run_id] = counts.get(run_id, 0) + 1
    return counts


# ------------------------------------------------------------------ trials
def sweep_trial(mode: str, base: Path, seed: int, n: int = 24) -> Outcome:
    """kill -9 a ``process``, ``thread`` or ``serial`` sweep, resume at once with the same
    executor.  Every run the killed launcher reported finished must have its success record."""
    import metalab
    from metalab.execution import ProcessExecutor, SerialExecutor, ThreadExecutor

    out = Outcome(seed)
    rng = random.Random(seed)
    root, counter, reported = base / "store", base / "count", base / "reported"
    counter.mkdir(parents=True)
    # the work takes ~0.5 s on 4 threads, ~1 s on 2 processes and ~2 s serially after the
    # first run starts
    window = {"process": 1.0, "thread": 0.5, "serial": 2.0}[mode]
    out.killed_mid_work = launch_and_kill(
        [mode, str(root), str(counter), str(n), str(reported)], rng, window, started=counter
    )
    exp = make_experiment(str(counter), n)
    folder = root / "faults_1"
    before = read_raw(folder, out)
    done_before = {rid for rid, doc in before.items() if doc.get("status") == "success"}
    said_done = set(reported.read_text().split()) if reported.exists() else set()
    for rid in sorted(said_done - done_before):
        out.problem("misreported", f"run {rid} was reported finished but has no success record")
    runs_before = executions(counter) if counter.exists() else {}
    executor = {"process": lambda: ProcessExecutor(max_workers=2), "thread": lambda: ThreadExecutor(4),
                "serial": SerialExecutor}[mode]()
    t0 = time.monotonic()
    handle = metalab.run(exp, store=root, executor=executor)
    if not handle.wait(timeout=STUCK_AFTER_S):
        handle.cancel()
        handle.wait()
        out.problem("misreported", f"the resume did not finish within {STUCK_AFTER_S} s")
    elapsed = time.monotonic() - t0
    after = read_raw(folder, out)
    check_files(folder, after, out)
    all_ids = [spec.run_id for spec in exp.iter_specs()]
    for rid in all_ids:
        if after.get(rid, {}).get("status") != "success":
            out.problem("lost", f"run {rid} is {after.get(rid, {}).get('status', 'missing')}")
    runs_after = executions(counter)
    resumed = {rid: runs_after.get(rid, 0) - runs_before.get(rid, 0) for rid in all_ids}
    st = handle.status
    expected = {
        "total": n,
        "done": n,
        "skipped": len(done_before),
        "success": n - len(done_before),
        "failed": 0,
        "cancelled": 0,
        "running": 0,
        "lost": 0,
    }
    for field, want in expected.items():
        got = getattr(st, field)
        if got != want:
            out.problem("misreported", f"handle {field}={got}, files say {want}")
    for rid in all_ids:
        if rid in done_before and resumed[rid]:
            out.problem("misreported", f"run {rid} had succeeded but was executed again")
        if rid not in done_before and resumed[rid] != 1:
            out.problem("misreported", f"run {rid} was executed {resumed[rid]} times by the resume")
    claims = folder / ".claims"
    if claims.is_dir():
        from metalab._internal._owner import holder_is_stale

        for path in claims.glob("*.claim"):
            # a claim the killed launcher left on a run that had already succeeded is
            # harmless debris (its owner is dead); a live one would block later launches
            owner = path.read_text().split("\n", 1)[0]
            if path.stem not in done_before or not holder_is_stale(owner, 0.0, STUCK_AFTER_S):
                out.problem("misreported", f"claim {path.name} ({owner}) left after the resume")
    if elapsed > STUCK_AFTER_S:
        out.problem("misreported", f"the resume took {elapsed:.1f} s")
    return out


def _expected_answer(folder: Path, out: Outcome) -> set[str]:
    return {rid for rid, doc in read_raw(folder, out).items() if (doc.get("metrics") or {}).get("y", -1) >= 20}


def rebuild_trial(template: Path, base: Path, seed: int) -> Outcome:
    """kill -9 a catalog rebuild loop, then query at once: same answers as the files, no wait."""
    from metalab.store import FileStore

    out = Outcome(seed)
    rng = random.Random(seed)
    root = base / "store"
    shutil.copytree(template, root)
    out.killed_mid_work = launch_and_kill(["rebuild", str(root), str(base), "1"], rng, 0.5)
    store = FileStore(root, "faults:1")
    t0 = time.monotonic()
    try:
        got = {row["run_id"] for row in store.query_runs(where="metrics.y >= 20", columns=["run_id"])}
    except Exception as exc:  # a raise here is a finding, reported with its type
        out.problem("corrupt", f"query after the kill raised {type(exc).__name__}: {exc}")
        return out
    elapsed = time.monotonic() - t0
    want = _expected_answer(root / "faults_1", out)
    if got != want:
        out.problem("corrupt", f"catalog answer differs from the files: {len(got)} vs {len(want)} runs")
    if elapsed > 5.0:
        out.problem("misreported", f"the query after the kill waited {elapsed:.1f} s (stale lock?)")
    return out


def export_trial(template: Path, base: Path, seed: int) -> Outcome:
    """kill -9 an export loop, export again at once: the copy equals the source file by file."""
    import metalab

    out = Outcome(seed)
    rng = random.Random(seed)
    dest = base / "copy"
    out.killed_mid_work = launch_and_kill(["export", str(template), str(base), "1", str(dest)], rng, 0.8)
    try:
        metalab.export_store(template, dest)
    except Exception as exc:
        out.problem("corrupt", f"export after the kill raised {type(exc).__name__}: {exc}")
        return out
    src_folder, dst_folder = template / "faults_1", dest / "faults_1"
    src = read_raw(src_folder, out)
    dst = read_raw(dst_folder, out)
    check_files(dst_folder, dst, out)
    for rid, doc in src.items():
        if rid not in dst:
            out.problem("lost", f"run {rid} missing from the copy")
        elif dst[rid] != doc:
            out.problem("corrupt", f"record of {rid} differs from the source")
    for sub in ("artifacts", "results", "derived", "logs"):
        for path in (src_folder / sub).rglob("*") if (src_folder / sub).is_dir() else ():
            if path.is_dir() or path.name.startswith(".") or path.name.endswith(".lock"):
                continue
            twin = dst_folder / path.relative_to(src_folder)
            if not twin.is_file() or twin.read_bytes() != path.read_bytes():
                out.problem("corrupt", f"{twin} differs from {path}")
    return out


def make_template(base: Path, n: int = 40) -> Path:
    """A finished store of ``n`` runs to rebuild or export (made once, read by many trials)."""
    import metalab
    from metalab.execution import ThreadExecutor

    root = base / "template"
    counter = base / "template-count"
    counter.mkdir(parents=True)
    exp = make_experiment(str(counter), n, sleep=0.0)
    metalab.run(exp, store=root, executor=ThreadExecutor(4)).wait()
    return root


def run_trials(name: str, trials: int, trial: Callable[[Path, int], Outcome], tmp: Path, first_seed: int = 0) -> Tally:
    tally = Tally(name)
    for i in range(trials):
        base = tmp / f"{'-'.join(name.split())}-{i}"
        base.mkdir(parents=True)
        tally.add(trial(base, first_seed + i))
        shutil.rmtree(base, ignore_errors=True)
    return tally
