"""A private PostgreSQL for tests: initdb in a temp dir, a free loopback port, stopped after."""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tests.helpers.processes import free_port

_databases = itertools.count(1)


def _bindir() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


def _as_postgres(argv: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: run them as the postgres user then."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


class PrivatePostgres:
    def __init__(self, bindir: Path, root: Path, port: int) -> None:
        self.bindir = bindir
        self.root = root
        self.port = port

    @property
    def base_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Stop the server at once (as a crash would, but cleanly enough to restart)."""
        subprocess.run(
            _as_postgres(
                [
                    str(self.bindir / "pg_ctl"),
                    "-D",
                    str(self.root / "data"),
                    "-m",
                    "immediate",
                    "stop",
                ]
            ),
            check=True,
            capture_output=True,
            timeout=60,
        )

    def start(self) -> None:
        _pg_start(self.bindir, self.root, self.port)

    def new_database(self) -> str:
        """A fresh, empty database; returns its URL."""
        name = f"gw_{os.getpid()}_{next(_databases)}"
        subprocess.run(
            [
                str(self.bindir / "createdb"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                name,
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
        return f"{self.base_url}/{name}"


def available() -> bool:
    return _bindir() is not None and (os.geteuid() != 0 or shutil.which("runuser") is not None)


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    bindir = _bindir()
    if bindir is None:
        raise RuntimeError("PostgreSQL server binaries not found under /usr/lib/postgresql")
    root = Path(tempfile.mkdtemp(prefix="pg-"))
    data = root / "data"
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(root, user.pw_uid, user.pw_gid)
    port = free_port()
    subprocess.run(
        _as_postgres(
            [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync"]
        ),
        check=True,
        capture_output=True,
        timeout=120,
    )
    _pg_start(bindir, root, port)
    try:
        yield PrivatePostgres(bindir, root, port)
    finally:
        subprocess.run(
            _as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"]),
            check=False,
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(root, ignore_errors=True)


def _pg_start(bindir: Path, root: Path, port: int) -> None:
    options = (
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
    )
    subprocess.run(
        _as_postgres(
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(root / "data"),
                "-o",
                options,
                "-w",
                "-l",
                str(root / "postgres.log"),
                "start",
            ]
        ),
        check=True,
        capture_output=True,
        timeout=120,
    )
