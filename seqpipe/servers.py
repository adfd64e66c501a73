"""`seqpipe up` / `seqpipe down`: the production profile's MLflow and Prefect servers, on PostgreSQL.

Both run as background processes of this machine, each in its own session so that
`down` can stop it with everything it spawned; pid files and logs live in
``servers.state_dir``. The PostgreSQL server itself is the user's (the URLs in
``servers``); `up` only creates the two databases when they are missing.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from seqpipe.config import PipelineConfig
from seqpipe.environment import quiet_environment
from seqpipe.errors import ConfigError

logger = logging.getLogger(__name__)

STOP_GRACE_SECONDS = 20


@dataclass(frozen=True)
class Server:
    name: str
    command: list[str]
    env: dict[str, str]
    health_url: str
    url: str


def ensure_database(url: str) -> None:
    """Create the database named in ``url`` on its PostgreSQL server if it does not exist."""
    parsed = make_url(url)
    admin = parsed.set(drivername="postgresql+psycopg2", database="postgres")
    try:
        engine = create_engine(admin, isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            exists = connection.execute(text("SELECT 1 FROM pg_database WHERE datname = :name"),
                                        {"name": parsed.database}).scalar()
            if not exists:
                # Identifiers cannot be bound parameters; quote it as PostgreSQL does.
                connection.execute(text(f'CREATE DATABASE "{parsed.database.replace(chr(34), chr(34) * 2)}"'))
        engine.dispose()
    except SQLAlchemyError as exc:
        raise ConfigError(f"cannot reach PostgreSQL at {parsed.render_as_string(hide_password=True)} "
                          f"(servers in the config): {str(exc).splitlines()[0]}") from None


def servers(cfg: PipelineConfig) -> list[Server]:
    settings = cfg.servers
    bin_dir = Path(sys.executable).parent
    mlflow_url = f"http://{settings.host}:{settings.mlflow_port}"
    prefect_url = f"http://{settings.host}:{settings.prefect_port}/api"
    return [
        Server("mlflow", [str(bin_dir / "mlflow"), "server", "--host", settings.host, "--port", str(settings.mlflow_port),
                          "--backend-store-uri", settings.mlflow_backend_store_uri,
                          "--artifacts-destination", str(cfg.path(settings.mlflow_artifacts_destination)),
                          "--serve-artifacts", "--workers", "1"],
               {}, f"{mlflow_url}/health", mlflow_url),
        Server("prefect", [sys.executable, "-m", "prefect", "server", "start", "--host", settings.host,
                           "--port", str(settings.prefect_port)],
               {"PREFECT_API_DATABASE_CONNECTION_URL": settings.prefect_database_url, "PREFECT_UI_API_URL": prefect_url},
               f"{prefect_url}/health", prefect_url),
    ]


def _state_dir(cfg: PipelineConfig) -> Path:
    folder = cfg.path(cfg.servers.state_dir)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _running_pid(pid_file: Path) -> int | None:
    if not pid_file.is_file():
        return None
    pid = int(pid_file.read_text())
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        pid_file.unlink()
        return None
    return pid


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def up(cfg: PipelineConfig) -> dict[str, str]:
    """Start the servers that are not running yet; wait until each answers; their URLs."""
    ensure_database(cfg.servers.mlflow_backend_store_uri)
    ensure_database(cfg.servers.prefect_database_url)
    state = _state_dir(cfg)
    started: dict[str, subprocess.Popen] = {}
    for server in servers(cfg):
        if _running_pid(state / f"{server.name}.pid") is not None:
            logger.info(f"{server.name}: already running at {server.url}")
            continue
        if _healthy(server.health_url):
            raise ConfigError(f"{server.name}: something else already answers at {server.url}; "
                              f"change servers.{server.name}_port in the config")
        log = (state / f"{server.name}.log").open("ab")
        process = subprocess.Popen(server.command, env={**quiet_environment(), **server.env}, cwd=cfg.root, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        (state / f"{server.name}.pid").write_text(str(process.pid))
        started[server.name] = process
    for server in servers(cfg):
        deadline = time.monotonic() + cfg.servers.start_timeout
        while not _healthy(server.health_url):
            process = started.get(server.name)
            if (process is not None and process.poll() is not None) or time.monotonic() > deadline:
                down(cfg)
                raise ConfigError(f"{server.name} did not come up at {server.url}; see {state / (server.name + '.log')}")
            time.sleep(0.5)
        logger.info(f"{server.name}: up at {server.url} (log: {state / (server.name + '.log')})")
    return {server.name: server.url for server in servers(cfg)}


def down(cfg: PipelineConfig) -> list[str]:
    """Stop the servers `up` started (each with its whole process group); the names stopped."""
    state = _state_dir(cfg)
    stopped = []
    for server in servers(cfg):
        pid_file = state / f"{server.name}.pid"
        pid = _running_pid(pid_file)
        if pid is None:
            continue
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        while _running_pid(pid_file) is not None and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.2)
        if _running_pid(pid_file) is not None:
            os.killpg(pid, signal.SIGKILL)
        pid_file.unlink(missing_ok=True)
        stopped.append(server.name)
        logger.info(f"{server.name}: stopped")
    return stopped


def _reap(pid: int) -> None:
    """Collect the exit status when the server is our own child (started by `up` in this process)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
