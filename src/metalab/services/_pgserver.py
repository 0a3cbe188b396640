"""A local PostgreSQL server for one user, run from the machine's PostgreSQL binaries.

:func:`start_server` creates (``initdb``) and starts (``pg_ctl``) a server whose
whole state lives in a folder the caller chooses; :func:`server_status` and
:func:`stop_server` look at and stop it.  The server listens on the loopback
interface only (``127.0.0.1``) on a free port, and its unix socket lives in the
same folder, so nothing outside that folder is touched.

PostgreSQL refuses to run as root.  When called as root, the server runs as an
unprivileged OS user (``postgres`` if it exists, else ``nobody``, or the one
passed as ``os_user``) and the folder is handed over to that user.

Authentication: ``trust`` for loopback connections by default (fine for a
throwaway or single-user machine).  Pass ``password=`` to require a password
(scram-sha-256); the password is never written to the state file.

The state file ``metalab-server.json`` in the folder records the port, user and
database, so a later ``status``/``stop`` (or another process) finds the server.
Functions are safe to call from several processes for *different* folders;
starting the same folder concurrently is not supported.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import shlex
import shutil
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from metalab._errors import ConfigError, MetalabError
from metalab._internal._atomic import atomic_write_bytes
from metalab._internal._json import dumps_pretty, loads

__all__ = [
    "PostgresServerError",
    "ServerInfo",
    "find_pg_binary",
    "server_status",
    "start_server",
    "stop_server",
]

#: a server parameter name (``shared_buffers``, ``auto_explain.log_min_duration``)
_SETTING_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")

STATE_FILE = "metalab-server.json"
_LOOPBACK = "127.0.0.1"

#: mode of the server folder: PostgreSQL refuses a data folder others can read
_PRIVATE_DIR_MODE = 0o700
#: mode of the temporary password file handed to initdb (owner only)
_PRIVATE_FILE_MODE = 0o600
#: tries to start the server on a fresh free port when the chosen one was taken meanwhile
_START_ATTEMPTS = 3
#: pause before try n+1 of a start is n times this (seconds)
_START_RETRY_BACKOFF_S = 0.2
#: seconds the pg_ctl process gets beyond its own ``-t`` wait before it is killed
_PG_CTL_GRACE_S = 30
#: most characters of a program's output or server log quoted in an error message
_ERROR_TAIL_CHARS = 2000
#: most characters of createdb's output quoted in an error message
_CREATEDB_ERROR_CHARS = 1000
#: timeout (seconds) of short probes: ``pg_config --bindir``, ``test -x``
_PROBE_TIMEOUT_S = 10
#: timeout (seconds) of ``pg_ctl status``
_STATUS_TIMEOUT_S = 30
#: timeout (seconds) of ``createdb``
_CREATEDB_TIMEOUT_S = 60
#: timeout (seconds) of other programs (``initdb``, ``pg_ctl stop``)
_COMMAND_TIMEOUT_S = 120


class PostgresServerError(MetalabError):
    """The local PostgreSQL server could not be created, started or stopped."""


@dataclass(frozen=True)
class ServerInfo:
    """Where a local server listens.

    Attributes:
        data_dir: the folder given to :func:`start_server`.
        host: always ``127.0.0.1``.
        port: TCP port.
        user: database super user name.
        dbname: database name.
        running: whether the server answered ``pg_ctl status``.
        os_user: OS user the server process runs as.
    """

    data_dir: str
    host: str
    port: int
    user: str
    dbname: str
    running: bool
    os_user: str

    @property
    def url(self) -> str:
        """``postgresql://user@127.0.0.1:port/db`` (never with a password)."""
        return f"postgresql://{quote(self.user, safe='')}@{self.host}:{self.port}/{quote(self.dbname, safe='')}"

    def locator(self, file_root: str | os.PathLike[str] | None = None) -> str:
        """The store locator of this server, with ``?file_root=`` when given."""
        if file_root is None:
            return self.url
        return f"{self.url}?file_root={quote(os.path.abspath(os.fspath(file_root)), safe='/')}"


# --------------------------------------------------------------------------- binaries
def find_pg_binary(name: str) -> str:
    """Path of PostgreSQL program ``name`` (``initdb``, ``pg_ctl``...).

    Looks in ``$PGBIN``, then ``pg_config --bindir``, then
    ``/usr/lib/postgresql/<newest>/bin`` and other usual places, then ``PATH``.

    Raises:
        PostgresServerError: not found; the message says how to install it.
    """
    candidates: list[str] = []
    if env := os.environ.get("PGBIN"):
        candidates.append(env)
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=_PROBE_TIMEOUT_S, check=False
            )
            if out.returncode == 0 and out.stdout.strip():
                candidates.append(out.stdout.strip())

    def _version(path: str) -> float:
        try:
            return float(Path(path).parent.name)
        except ValueError:
            return 0.0

    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version, reverse=True)
    candidates += sorted(glob.glob("/usr/pgsql-*/bin"), reverse=True)
    candidates += ["/opt/homebrew/bin", "/usr/local/bin", "/usr/local/pgsql/bin"]
    for folder in candidates:
        exe = os.path.join(folder, name)
        if os.path.isfile(exe) and os.access(exe, os.X_OK):
            return exe
    found = shutil.which(name)
    if found:
        return found
    raise PostgresServerError(
        f"PostgreSQL program {name!r} not found (looked in $PGBIN, pg_config --bindir, "
        "/usr/lib/postgresql/*/bin and PATH). Install the PostgreSQL server, e.g. "
        "'apt-get install postgresql' (Debian/Ubuntu), 'dnf install postgresql-server' or "
        "'brew install postgresql', or set PGBIN to the folder holding initdb and pg_ctl"
    )


# ----------------------------------------------------------------------------- helpers
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((_LOOPBACK, 0))
        return int(s.getsockname()[1])


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # as the server does: connections of a just-stopped server linger in
        # TIME_WAIT, which must not make its own port look taken
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((_LOOPBACK, port))
        except OSError:
            return False
        return True


def _pick_os_user(os_user: str | None) -> pwd.struct_passwd | None:
    """The OS user to run as, or ``None`` to run as the current user."""
    if os.geteuid() != 0:
        if os_user and os_user != pwd.getpwuid(os.geteuid()).pw_name:
            raise ConfigError(
                f"cannot run the server as OS user {os_user!r} without root; omit os_user"
            )
        return None
    names = [os_user] if os_user else ["postgres", "nobody"]
    for name in names:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        if entry.pw_uid == 0:
            raise ConfigError(f"PostgreSQL refuses to run as root; os_user {name!r} is root")
        return entry
    raise ConfigError(
        f"running as root, PostgreSQL needs an unprivileged OS user, but {names} do not "
        "exist; create one (e.g. 'useradd --system postgres') or pass os_user="
    )


def _run(
    cmd: list[str],
    as_user: pwd.struct_passwd | None,
    *,
    timeout: float = _COMMAND_TIMEOUT_S,
    extra_env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    kwargs: dict[str, Any] = {}
    env = dict(os.environ)
    env.update(extra_env or {})
    if as_user is not None:
        kwargs.update(user=as_user.pw_uid, group=as_user.pw_gid, extra_groups=[])
        env["HOME"] = as_user.pw_dir or "/"
        env["USER"] = env["LOGNAME"] = as_user.pw_name
    env.setdefault("LC_ALL", "C.UTF-8")
    return subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
        cwd="/",
        **kwargs,
    )


def _chown_tree(path: Path, entry: pwd.struct_passwd) -> None:
    os.chown(path, entry.pw_uid, entry.pw_gid)


def _check_traversable(path: Path, entry: pwd.struct_passwd) -> None:
    """The server user must be able to reach ``path``; say so clearly if not."""
    probe = _run(["test", "-x", str(path.parent)], entry, timeout=_PROBE_TIMEOUT_S)
    if probe.returncode != 0:
        raise PostgresServerError(
            f"the OS user {entry.pw_name!r} that runs PostgreSQL cannot reach {path.parent}; "
            "choose a data folder outside root-only folders such as /root (e.g. under /tmp "
            "or /srv), or make its parents world-executable"
        )


def _state_path(data_dir: Path) -> Path:
    return data_dir / STATE_FILE


def _read_state(data_dir: Path) -> dict[str, Any] | None:
    try:
        state = loads(_state_path(data_dir).read_bytes())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def _pgdata(data_dir: Path) -> Path:
    return data_dir / "pgdata"


# ------------------------------------------------------------------------------- API
def server_status(data_dir: str | os.PathLike[str]) -> ServerInfo | None:
    """The server of ``data_dir``, or ``None`` if the folder holds none.

    ``ServerInfo.running`` tells whether it is running right now.
    """
    folder = Path(data_dir).absolute()
    state = _read_state(folder)
    if state is None or not (_pgdata(folder) / "PG_VERSION").exists():
        return None
    entry = _pick_os_user(state.get("os_user")) if os.geteuid() == 0 else None
    res = _run([find_pg_binary("pg_ctl"), "-D", str(_pgdata(folder)), "status"], entry, timeout=_STATUS_TIMEOUT_S)
    return ServerInfo(
        data_dir=str(folder),
        host=_LOOPBACK,
        port=int(state["port"]),
        user=str(state["user"]),
        dbname=str(state["dbname"]),
        running=res.returncode == 0,
        os_user=str(state.get("os_user") or pwd.getpwuid(os.geteuid()).pw_name),
    )


def _settings_options(settings: Mapping[str, str | int] | None) -> list[str]:
    """``-c name=value`` options of ``settings``; ConfigError for a name that is
    not a server parameter name."""
    opts: list[str] = []
    for name, value in (settings or {}).items():
        if not isinstance(name, str) or not _SETTING_RE.match(name):
            raise ConfigError(
                f"server setting {name!r} is not a parameter name (letters, digits, "
                "'_' and '.', e.g. 'shared_buffers')")
        if not isinstance(value, str | int) or "\x00" in str(value):
            raise ConfigError(f"server setting {name}: give a text or an integer value")
        opts += ["-c", f"{name}={value}"]
    return opts


def start_server(
    data_dir: str | os.PathLike[str],
    *,
    port: int | None = None,
    user: str = "postgres",
    dbname: str = "postgres",
    password: str | None = None,
    os_user: str | None = None,
    fast: bool = False,
    max_connections: int = 200,
    timeout: float = 60.0,
    settings: Mapping[str, str | int] | None = None,
) -> ServerInfo:
    """Create (first time) and start the server kept in ``data_dir``; idempotent.

    Args:
        data_dir: folder for the server's files (created if missing).
        port: TCP port on 127.0.0.1; default: the one used before, else a free one.
        user: database super user.
        dbname: database to create (``postgres`` always exists).
        password: require this password (scram-sha-256) instead of ``trust``.
            Only used when the folder is first initialised; never stored.
        os_user: when running as root, the OS user to run the server as.
        fast: turn off fsync / synchronous_commit (throwaway test servers).
        max_connections: server connection limit.
        timeout: seconds to wait for the server to accept connections.
        settings: more server parameters for this start (``-c name=value``),
            e.g. ``{"shared_buffers": "4GB"}``; a server already running keeps
            its own (stop it first).

    Returns:
        the running server; ``info.locator(file_root)`` gives the store locator.

    Raises:
        PostgresServerError: binaries missing, initdb or start failed (the
            message quotes the server log).
        ConfigError: bad arguments (e.g. root without an unprivileged user).
    """
    extra = _settings_options(settings)
    folder = Path(data_dir).absolute()
    existing = server_status(folder)
    if existing is not None and existing.running:
        return existing
    entry = _pick_os_user(os_user)
    initdb, pg_ctl = find_pg_binary("initdb"), find_pg_binary("pg_ctl")
    _prepare_folder(folder, entry)
    pgdata = _pgdata(folder)
    state = _read_state(folder) or {}
    if not (pgdata / "PG_VERSION").exists():
        _initdb(initdb, folder, user=user, password=password, fast=fast, entry=entry)
        state = {}
    log_file = folder / "server.log"
    last_error = ""
    for attempt in range(_START_ATTEMPTS):
        chosen = port or (
            int(state["port"]) if state.get("port") and _port_free(int(state["port"])) else None
        ) or _free_port()
        opts = _start_options(folder, chosen, max_connections=max_connections, fast=fast) + extra
        res = _run(
            [pg_ctl, "-D", str(pgdata), "-l", str(log_file), "-w", "-t", str(int(timeout)),
             "-o", shlex.join(opts), "start"],
            entry,
            timeout=timeout + _PG_CTL_GRACE_S,
        )
        if res.returncode == 0:
            info = _record_started(folder, chosen, user, dbname, password, entry)
            if dbname != "postgres":
                _create_database(info, password, entry)
            return info
        last_error = _tail(log_file) or (res.stderr or res.stdout).strip()
        if port is not None:
            break
        state = {}
        time.sleep(_START_RETRY_BACKOFF_S * (attempt + 1))
    raise PostgresServerError(
        f"PostgreSQL did not start from {pgdata}: {last_error[-_ERROR_TAIL_CHARS:]}"
    )


def _prepare_folder(folder: Path, entry: pwd.struct_passwd | None) -> None:
    """Create ``folder``, hand it to the server's OS user, and make it private."""
    folder.mkdir(parents=True, exist_ok=True)
    if entry is not None:
        _chown_tree(folder, entry)
        _check_traversable(folder, entry)
    os.chmod(folder, _PRIVATE_DIR_MODE)


def _initdb(
    initdb: str,
    folder: Path,
    *,
    user: str,
    password: str | None,
    fast: bool,
    entry: pwd.struct_passwd | None,
) -> None:
    """Create the server's data folder (``initdb``); PostgresServerError if that fails."""
    pgdata = _pgdata(folder)
    if pgdata.exists():
        shutil.rmtree(pgdata)  # left by an initdb that did not finish
    cmd = [initdb, "-D", str(pgdata), "-U", user, "-E", "UTF8", "--locale=C.UTF-8"]
    pwfile = folder / ".pwfile"
    if password is not None:
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, _PRIVATE_FILE_MODE)
        with os.fdopen(fd, "w") as fh:
            fh.write(password + "\n")
        if entry is not None:
            os.chown(pwfile, entry.pw_uid, entry.pw_gid)
        cmd += ["-A", "scram-sha-256", f"--pwfile={pwfile}"]
    else:
        cmd += ["-A", "trust"]
    if fast:
        cmd.append("--no-sync")
    try:
        res = _run(cmd, entry)
    finally:
        with contextlib.suppress(OSError):
            pwfile.unlink()
    if res.returncode != 0:
        raise PostgresServerError(
            f"initdb failed for {pgdata} (exit {res.returncode}): "
            f"{(res.stderr or res.stdout).strip()[-_ERROR_TAIL_CHARS:]}"
        )


def _start_options(folder: Path, port: int, *, max_connections: int, fast: bool) -> list[str]:
    """The server options of ``pg_ctl start -o``: loopback only, socket in ``folder``."""
    opts = [
        "-p", str(port), "-k", str(folder),
        "-c", f"listen_addresses={_LOOPBACK}",
        "-c", f"max_connections={int(max_connections)}",
    ]
    if fast:
        opts += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
    return opts


def _record_started(
    folder: Path,
    port: int,
    user: str,
    dbname: str,
    password: str | None,
    entry: pwd.struct_passwd | None,
) -> ServerInfo:
    """Write the state file of a server that just started; its ServerInfo."""
    state = {
        "port": port,
        "host": _LOOPBACK,
        "user": user,
        "dbname": dbname,
        "os_user": entry.pw_name if entry else None,
        "auth": "scram-sha-256" if password is not None else "trust",
    }
    atomic_write_bytes(_state_path(folder), dumps_pretty(state))
    if entry is not None:
        os.chown(_state_path(folder), entry.pw_uid, entry.pw_gid)
    return ServerInfo(str(folder), _LOOPBACK, port, user, dbname, True,
                      entry.pw_name if entry else pwd.getpwuid(os.geteuid()).pw_name)

def _tail(path: Path, n: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def _create_database(info: ServerInfo, password: str | None, entry: pwd.struct_passwd | None) -> None:
    createdb = find_pg_binary("createdb")
    res = _run(
        [createdb, "-h", info.host, "-p", str(info.port), "-U", info.user, info.dbname],
        entry,
        timeout=_CREATEDB_TIMEOUT_S,
        extra_env={"PGPASSWORD": password} if password else None,
    )
    if res.returncode != 0 and "already exists" not in res.stderr:
        raise PostgresServerError(
            f"could not create database {info.dbname!r}: {res.stderr.strip()[-_CREATEDB_ERROR_CHARS:]}"
        )


def stop_server(
    data_dir: str | os.PathLike[str], *, mode: str = "fast", remove: bool = False
) -> bool:
    """Stop the server of ``data_dir``; returns whether one was running.

    Args:
        mode: ``pg_ctl`` shutdown mode: ``smart``, ``fast`` or ``immediate``.
        remove: also delete ``data_dir`` (all data of that server).

    Raises:
        PostgresServerError: ``pg_ctl stop`` failed.
    """
    if mode not in ("smart", "fast", "immediate"):
        raise ConfigError(f"mode must be 'smart', 'fast' or 'immediate', not {mode!r}")
    folder = Path(data_dir).absolute()
    info = server_status(folder)
    was_running = bool(info and info.running)
    if was_running and info is not None:
        entry = _pick_os_user(info.os_user) if os.geteuid() == 0 else None
        res = _run(
            [find_pg_binary("pg_ctl"), "-D", str(_pgdata(folder)), "-m", mode, "-w", "stop"],
            entry,
            timeout=_COMMAND_TIMEOUT_S,
        )
        if res.returncode != 0 and server_status(folder) is not None:
            still = server_status(folder)
            if still is not None and still.running:
                raise PostgresServerError(
                    f"pg_ctl stop failed for {folder}: {(res.stderr or res.stdout).strip()}"
                )
    if remove:
        shutil.rmtree(folder, ignore_errors=True)
    return was_running
