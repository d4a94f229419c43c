"""A real Airflow 3.3 deployment on this machine, for the deployment test and the Celery script.

Everything listens on 127.0.0.1 and lives in one scratch directory:

* :class:`PostgresCluster`: a throw-away PostgreSQL cluster (the machine's ``initdb``), holding
  the metadata database and the example data; ``tests/postgres.py``'s fixture makes one too, and
  :func:`airflow_connection_json` is how both hand a database to Airflow (no pytest here: the
  Celery script's virtualenv has none);
* :class:`AirflowDeployment`: ``airflow db migrate``, then the API server, scheduler, DAG
  processor (and Celery workers, with the CeleryExecutor) as child processes, each in its own
  process group with its output in ``AIRFLOW_HOME/logs/deployment/<name>.log``; a REST client
  for ``/api/v2`` with a token from the simple auth manager (``GET /auth/token``, which
  ``simple_auth_manager_all_admins`` allows without credentials); and ``airflow dags trigger``.

``stop()`` on either ends every process it started (SIGTERM to the process group, SIGKILL after a
grace period). Nothing here prints a secret: the JWT secret and the API token never reach a log.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[2]
TERMINAL_RUN_STATES = {"success", "failed"}


class DeploymentError(RuntimeError):
    """A component did not start or an API call failed."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def postgres_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def wait_for(check: Any, *, timeout: float, interval: float = 0.5, what: str = "a condition") -> Any:
    """Call ``check()`` until it returns something truthy; that value. DeploymentError on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise DeploymentError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class PostgresCluster:
    """A temporary PostgreSQL cluster on a free loopback port (trust auth, user ``postgres``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.port = 0
        self._started = False

    def _as_postgres(self, argv: list[str]) -> list[str]:
        # initdb and postgres refuse to run as root.
        return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv

    def start(self) -> str:
        initdb, pg_ctl = postgres_bin("initdb"), postgres_bin("pg_ctl")
        if not initdb or not pg_ctl:
            raise DeploymentError(
                "no PostgreSQL server binaries (initdb, pg_ctl); apt-get install postgresql"
            )
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.root, user="postgres")
        self.port = free_port()
        subprocess.run(
            self._as_postgres([initdb, "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8"]),
            check=True,
            capture_output=True,
        )
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=200"
        subprocess.run(
            self._as_postgres(
                [
                    pg_ctl,
                    "-D",
                    str(self.data),
                    "-l",
                    str(self.root / "server.log"),
                    "-w",
                    "-o",
                    options,
                    "start",
                ]
            ),
            check=True,
            capture_output=True,
        )
        self._started = True
        return self.dsn("postgres")

    def dsn(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg2

        db = psycopg2.connect(self.dsn("postgres"))
        try:
            db.autocommit = True  # CREATE DATABASE cannot run in a transaction
            with db.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{name}"')
        finally:
            db.close()
        return self.dsn(name)

    def stop(self) -> None:
        if self._started:
            pg_ctl = postgres_bin("pg_ctl")
            assert pg_ctl is not None
            subprocess.run(
                self._as_postgres([pg_ctl, "-D", str(self.data), "-m", "fast", "stop"]), capture_output=True
            )
            self._started = False


def airflow_connection_json(dsn: str) -> str:
    """``AIRFLOW_CONN_...`` JSON for a ``postgres`` connection to ``dsn``."""
    parts = urlsplit(dsn)
    return json.dumps(
        {
            "conn_type": "postgres",
            "host": parts.hostname,
            "port": parts.port,
            "login": parts.username,
            "password": parts.password or "",
            "schema": parts.path.lstrip("/"),
        }
    )


class AirflowDeployment:
    """Airflow's components as child processes sharing one ``AIRFLOW_HOME`` and metadata database.

    :param home: the ``AIRFLOW_HOME`` (created).
    :param python: the interpreter whose environment has Airflow (and the provider) installed.
    :param metadata_dsn: ``postgresql://...`` of the metadata database.
    :param dags_folder: the DAG files.
    :param executor: ``LocalExecutor`` or ``CeleryExecutor``.
    :param env: more environment variables for every component (connections, Celery settings).
    """

    def __init__(
        self,
        *,
        home: Path,
        python: str,
        metadata_dsn: str,
        dags_folder: Path,
        executor: str = "LocalExecutor",
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.home = home
        self.python = python
        self.api_port = free_port()
        self.base_url = f"http://127.0.0.1:{self.api_port}"
        self.logs = home / "logs"
        self.component_logs = self.logs / "deployment"
        self.component_logs.mkdir(parents=True, exist_ok=True)
        self._processes: dict[str, tuple[subprocess.Popen[bytes], IO[bytes]]] = {}
        self._token: str | None = None
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        sqlalchemy_url = metadata_dsn.replace("postgresql://", "postgresql+psycopg2://", 1)
        base = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        # The provider from this tree (a clean export, a worktree), before any installed copy.
        base["PYTHONPATH"] = str(ROOT)
        self.env = {
            **base,
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": executor,
            "AIRFLOW__CORE__PARALLELISM": "8",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sqlalchemy_url,
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.api_port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__BASE_URL": self.base_url,
            # Every component must sign and check the execution API's tokens with the same secret.
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            # Find new DAG files and runs quickly: this deployment lives for minutes.
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "30",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_SEC": "2",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            **(env or {}),
        }

    # ---- processes -------------------------------------------------------------------------------

    def airflow(
        self, *args: str, timeout: float = 300, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run one ``airflow`` CLI command to completion."""
        result = subprocess.run(
            [self.python, "-m", "airflow", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=self.home,
        )
        if check and result.returncode != 0:
            raise DeploymentError(
                f"airflow {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
            )
        return result

    def start(self, name: str, *args: str, env: Mapping[str, str] | None = None) -> None:
        """Start ``airflow <args>`` in its own process group, its output in ``logs/deployment/``."""
        log = open(self.component_logs / f"{name}.log", "wb")  # noqa: SIM115
        process = subprocess.Popen(
            [self.python, "-m", "airflow", *args],
            env={**self.env, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=self.home,
        )
        self._processes[name] = (process, log)

    def start_core(self) -> None:
        """The API server, the scheduler and the DAG processor; returns once all three are healthy."""
        self.start("api-server", "api-server", "--host", "127.0.0.1", "--port", str(self.api_port))
        self.start("scheduler", "scheduler", "--skip-serve-logs")
        self.start("dag-processor", "dag-processor")
        self.wait_healthy()

    def check_running(self) -> None:
        for name, (process, _) in self._processes.items():
            if process.poll() is not None:
                tail = (self.component_logs / f"{name}.log").read_text(errors="replace")[-4000:]
                raise DeploymentError(f"{name} exited with {process.returncode}:\n{tail}")

    def wait_healthy(self, timeout: float = 180) -> None:
        def healthy() -> bool:
            self.check_running()
            try:
                health = self._request("GET", "/api/v2/monitor/health", auth=False)
            except DeploymentError:
                return False
            return all(
                (health.get(part) or {}).get("status") == "healthy"
                for part in ("metadatabase", "scheduler", "dag_processor")
            )

        wait_for(healthy, timeout=timeout, interval=1.0, what="the API server, scheduler and DAG processor")

    def stop(self, grace: float = 20) -> None:
        """SIGTERM every component's process group, SIGKILL what is left after ``grace`` seconds."""
        for process, _ in self._processes.values():
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for process, log in self._processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            # The group may outlive its leader (task processes, API server workers).
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            log.close()
        self._processes.clear()

    # ---- REST API ----------------------------------------------------------------------------------

    def token(self) -> str:
        """A JWT for ``/api/v2`` from the simple auth manager (all users are admins here)."""
        if self._token is None:
            self._token = self._request("GET", "/auth/token", auth=False)["access_token"]
        return self._token

    def _request(self, method: str, path: str, body: Any = None, *, auth: bool = True) -> Any:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token()}"
        request = urllib.request.Request(
            self.base_url + path,
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers=headers,
        )
        try:
            with self._opener.open(request, timeout=30) as answer:
                data = answer.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:1000].decode(errors="replace")
            raise DeploymentError(f"{method} {path}: HTTP {exc.code}: {detail}") from None
        except OSError as exc:
            raise DeploymentError(f"{method} {path}: {exc}") from None
        return json.loads(data) if data else None

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """One authenticated ``/api/v2`` call; the parsed JSON answer."""
        return self._request(method, f"/api/v2{path}", body)

    def wait_for_dags(self, dag_ids: Sequence[str], timeout: float = 180) -> None:
        """Until the DAG processor has parsed and stored every one of ``dag_ids`` (no import error)."""

        def parsed() -> bool:
            self.check_running()
            errors = self.api("GET", "/importErrors")["import_errors"]
            if errors:
                raise DeploymentError(f"DAG import errors: {json.dumps(errors)[:3000]}")
            known = {dag["dag_id"] for dag in self.api("GET", "/dags?limit=100")["dags"]}
            return set(dag_ids) <= known

        wait_for(parsed, timeout=timeout, interval=2.0, what=f"DAGs {sorted(dag_ids)} to be parsed")

    def trigger(self, dag_id: str, run_id: str, conf: Mapping[str, Any] | None = None) -> str:
        """``airflow dags trigger``; the run id."""
        args = ["dags", "trigger", dag_id, "--run-id", run_id]
        if conf:
            args += ["--conf", json.dumps(conf)]
        self.airflow(*args)
        return run_id

    def run_state(self, dag_id: str, run_id: str) -> str:
        return str(self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")["state"])

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 300) -> str:
        """Until the run is ``success`` or ``failed``; that state."""

        def finished() -> str | None:
            self.check_running()
            state = self.run_state(dag_id, run_id)
            return state if state in TERMINAL_RUN_STATES else None

        return wait_for(finished, timeout=timeout, interval=2.0, what=f"{dag_id} run {run_id} to finish")

    def task_instances(self, dag_id: str, run_id: str) -> dict[tuple[str, int], dict[str, Any]]:
        answer = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=100")
        return {(ti["task_id"], ti["map_index"]): ti for ti in answer["task_instances"]}

    def tries(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> list[dict[str, Any]]:
        """Every try of a task instance (the earlier ones from its history), by ``try_number``;
        each has ``start_date`` and ``end_date`` (ISO 8601, UTC; None while not started/running)."""
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/tries?map_index={map_index}"
        return sorted(self.api("GET", path)["task_instances"], key=lambda ti: int(ti["try_number"]))

    def xcom(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> Any:
        """The ``return_value`` XCom of a task instance, through the REST API."""
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value"
        value = self.api("GET", f"{path}?map_index={map_index}")["value"]
        return json.loads(value) if isinstance(value, str) else value

    def set_task_state(self, dag_id: str, run_id: str, task_id: str, state: str) -> Any:
        """``PATCH`` a task instance's state, as the UI's "Mark as failed" does."""
        return self.api(
            "PATCH", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}", {"new_state": state}
        )

    def log_files(self) -> list[Path]:
        """Every file under ``AIRFLOW_HOME/logs``: task logs, component logs, DAG processor logs."""
        return sorted(path for path in self.logs.rglob("*") if path.is_file())


def scratch_dir(prefix: str) -> Path:
    """A new directory under the system temp dir, readable by the ``postgres`` user (for its cluster)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path
