"""What every benchmark section uses: settings, results and targets, the child-process runner,
printing, and reading the server's request log (per-second series, report vs server state)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import API_KEY, OTHER_CLIENT_AGENT, customer_uuid, expected_custom
from _server import ServerProcess, child_environment

HERE = Path(__file__).resolve().parent
CASES_SCRIPT = HERE / "_cases.py"

# ChartMogul's documented limits.
CEILING_PER_SECOND = 40.0
MAX_PARALLEL = 20
LATENCY_SECONDS = 0.15
# Runs that measure memory or request counts, not the rate limit.
FAST_REQUESTS_PER_SECOND = 5000


class CaseFailed(RuntimeError):
    """A measured child process failed; the message ends with the tail of its output."""


class CaseTimedOut(CaseFailed):
    """A measured child process did not finish in time and was killed."""


@dataclass
class Settings:
    """The command line's choices (sizes already resolved for --quick)."""

    sections: tuple[str, ...]
    quick: bool
    keep: bool
    check: bool
    bytecode_cache: bool
    customers: int  # throughput
    scenario_customers: int  # 503s, 500s, shared account, each of the two tasks
    down_customers: int
    loris_customers: int
    sync_customers: int
    sync_sample: int
    memory_rows: tuple[int, int]
    account: int
    resolve_records: int
    per_customer_records: int
    picture: Path | None


@dataclass
class Target:
    """One target and whether the run met it."""

    section: str
    name: str
    figure: str
    goal: str
    met: bool | None  # None: not measured

    @property
    def mark(self) -> str:
        return "PASS" if self.met else "MISS" if self.met is not None else "n/a "


@dataclass
class Results:
    """Everything measured: per-section figures, targets, picture panels."""

    machine: dict[str, Any] = field(default_factory=dict)
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    panels: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    markdown_rows: list[str] = field(default_factory=list)

    def target(self, section: str, name: str, figure: str, goal: str, met: bool | None) -> None:
        """Record a target and print its verdict."""
        target = Target(section, name, figure, goal, met)
        self.targets.append(target)
        say(f"   [{target.mark}] {name}: {figure} (target {goal})")


# ---- printing --------------------------------------------------------------------------------------


def say(text: str = "") -> None:
    print(text, flush=True)


def heading(section: str, text: str) -> None:
    """A blank line, then the line that opens a section's output: ``== section: text``."""
    say()
    say(f"== {section}: {text}")


def fmt_int(value: int) -> str:
    return f"{value:,}"


def per_second(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("nan")


def cpu_ms_per_customer(result: Mapping[str, Any]) -> float:
    return 1000 * result["cpu_seconds"] / max(result["customers"], 1)


def print_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    rows = [tuple(header), *[tuple(r) for r in rows]]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for index, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [
            cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)
        ]
        say("   " + "  ".join(cells))
        if index == 0:
            say("   " + "  ".join("-" * width for width in widths))


def say_failures(label: str, result: Mapping[str, Any]) -> None:
    for failure in result.get("failures") or []:
        say(f"   {label} failure: {failure}")


def git_state(package_dir: str) -> str:
    """``git <short sha>`` of the provider's repository, noting uncommitted changes to the package."""
    repo = Path(package_dir).parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=30, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    head = git("rev-parse", "--short", "HEAD")
    if head is None:
        return "git: no commit" if git("rev-parse", "--git-dir") is not None else "not a git checkout"
    dirty = git("status", "--porcelain", "--", Path(package_dir).name)
    return f"git {head}" + (" + uncommitted changes" if dirty else "")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# ---- child processes --------------------------------------------------------------------------------


class Pending:
    """A measured child process started by :meth:`Runner.start_case`."""

    def __init__(self, case: str, process: subprocess.Popen[bytes], out: Path, log: Path) -> None:
        self.case, self.process, self.out, self.log = case, process, out, log

    def wait(self, timeout: float) -> dict[str, Any]:
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise CaseTimedOut(
                f"{self.case} did not finish within {timeout:.0f} s (killed){tail(self.log)}"
            ) from None
        if self.process.returncode != 0 or not self.out.exists():
            raise CaseFailed(f"{self.case} exited with status {self.process.returncode}{tail(self.log)}")
        return dict(json.loads(self.out.read_text(encoding="utf-8")))


def tail(path: Path, lines: int = 25) -> str:
    text = path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
    return "\n    " + "\n    ".join(text) if text else ""


class Runner:
    """Starts servers and measured child processes in one temporary working directory."""

    def __init__(self, settings: Settings, workdir: Path) -> None:
        self.settings = settings
        self.workdir = workdir
        self.home = workdir / "airflow-home"
        self.home.mkdir()
        self._counter = 0
        base = dict(os.environ)
        if settings.bytecode_cache:
            # A worker has its bytecode compiled; without a cache every process recompiles all of
            # Airflow (10 s and more here). A private prefix writes nothing into the work tree.
            base.pop("PYTHONDONTWRITEBYTECODE", None)
            cache = Path(tempfile.gettempdir()) / "airflow-provider-chartmogul-bench" / "pycache"
            cache.mkdir(parents=True, exist_ok=True)
            base["PYTHONPYCACHEPREFIX"] = str(cache)
        base.pop("AIRFLOW_CONN_CHARTMOGUL_DEFAULT", None)
        self.base_env = child_environment(
            base,
            AIRFLOW_HOME=str(self.home),
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            AIRFLOW__CORE__DAGS_FOLDER=str(workdir / "dags"),
        )

    def path(self, name: str) -> Path:
        self._counter += 1
        return self.workdir / f"{self._counter:02d}-{name}"

    def server(self, name: str, **kwargs: Any) -> ServerProcess:
        return ServerProcess(
            api_key=API_KEY, log_path=self.workdir / f"server-{name}.log", env=self.base_env, **kwargs
        )

    def server_at_limits(self, name: str, **kwargs: Any) -> ServerProcess:
        """A server with ChartMogul's latency, rate limit and parallel limit (``kwargs`` override)."""
        limits = {"latency": LATENCY_SECONDS, "rate_limit": CEILING_PER_SECOND, "max_parallel": MAX_PARALLEL}
        return self.server(name, **{**limits, **kwargs})

    def start_case(
        self, case: str, spec: Mapping[str, Any], *, env: Mapping[str, str] | None = None
    ) -> Pending:
        """Start ``_cases.py CASE`` in a fresh process."""
        stem = self.path(case)
        spec_path, out_path, log_path = (stem.with_suffix(s) for s in (".spec.json", ".out.json", ".log"))
        spec_path.write_text(json.dumps(spec), encoding="utf-8")
        command = [sys.executable, str(CASES_SCRIPT), case, str(spec_path), str(out_path)]
        with open(log_path, "w", encoding="utf-8") as log:
            process = subprocess.Popen(
                command, env=dict(env or self.base_env), stdout=log, stderr=subprocess.STDOUT
            )
        return Pending(case, process, out_path, log_path)

    def run_case(
        self, case: str, spec: Mapping[str, Any], *, timeout: float, env: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """Run ``_cases.py CASE`` in a fresh process; its figures."""
        return self.start_case(case, spec, env=env).wait(timeout)

    def provider_env(self, url: str, extra: Mapping[str, Any] | None = None, **env: str) -> dict[str, str]:
        """The environment of a provider case: a ``chartmogul_default`` connection to ``url``."""
        connection: dict[str, Any] = {"conn_type": "chartmogul", "host": url, "password": API_KEY}
        if extra:
            connection["extra"] = json.dumps(dict(extra))
        return child_environment(self.base_env, AIRFLOW_CONN_CHARTMOGUL_DEFAULT=json.dumps(connection), **env)


def wait_for_files(paths: Sequence[Path], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not all(p.exists() for p in paths):
        if time.monotonic() > deadline:
            raise CaseFailed(f"not ready within {timeout:.0f} s: {', '.join(p.name for p in paths)}")
        time.sleep(0.05)


# ---- the server's view ------------------------------------------------------------------------------


def is_pushback(entry: Mapping[str, Any]) -> bool:
    return entry["status"] in (429, 503)


def timeline(log: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per-second counts of admitted requests, the busiest 1 s window, and when 429/503 came."""
    if not log:
        return {"admitted_per_second": [], "max_in_window": 0, "pushback_at": []}
    start = min(entry["started"] for entry in log)
    admitted = sorted(entry["started"] - start for entry in log if not is_pushback(entry))
    pushback = sorted(entry["started"] - start for entry in log if is_pushback(entry))
    seconds = Counter(int(t) for t in admitted)
    per_second_counts = [seconds.get(i, 0) for i in range(int(max(admitted, default=0)) + 1)]
    busiest, first = 0, 0
    for last, moment in enumerate(admitted):
        while admitted[first] <= moment - 1.0:
            first += 1
        busiest = max(busiest, last - first + 1)
    return {"admitted_per_second": per_second_counts, "max_in_window": busiest, "pushback_at": pushback}


def is_other_client(entry: Mapping[str, Any]) -> bool:
    return (entry.get("headers") or {}).get("user-agent") == OTHER_CLIENT_AGENT


def panel(
    title: str,
    log: Sequence[Mapping[str, Any]],
    series_of: Callable[[Mapping[str, Any]], str] = lambda entry: "provider",
    *,
    spans: Sequence[tuple[float, float, str]] = (),
    note: str = "",
) -> dict[str, Any]:
    """One picture panel from a request log (server times): per second, the answers of each
    series other than 429/503, and the 429s and 503s; time 0 is the first provider request."""
    ours = [e["started"] for e in log if not is_other_client(e)]
    if not ours:
        return {
            "title": title,
            "seconds": 0,
            "series": {},
            "429": [],
            "503": [],
            "note": note or "no requests",
        }
    start, end = min(ours), max(ours)
    seconds = int(end - start) + 1
    series: dict[str, list[int]] = {}
    pushback = {"429": [0] * seconds, "503": [0] * seconds}
    for entry in log:
        second = int(entry["started"] - start)
        if not 0 <= second < seconds:
            continue
        if is_pushback(entry):
            pushback[str(entry["status"])][second] += 1
        else:
            series.setdefault(series_of(entry), [0] * seconds)[second] += 1
    return {
        "title": title,
        "seconds": seconds,
        "series": dict(sorted(series.items(), key=lambda item: (item[0] == "other integration", item[0]))),
        **pushback,
        "spans": [(a - start, b - start, label) for a, b, label in spans],
        "note": note,
        "start": start,
    }


def server_log(server: ServerProcess) -> list[dict[str, Any]]:
    """The server's request log without the bodies (listing pages would make it large)."""
    return list(server.admin("GET", "requests?bodies=0"))


def written(server: ServerProcess, expected: Mapping[str, Mapping[str, Any]]) -> set[str]:
    """The uuids whose custom attributes on the server hold every expected value."""
    state = server.admin("GET", "customers?view=custom")
    return {
        uuid
        for uuid, values in expected.items()
        if all(state.get(uuid, {}).get(key) == value for key, value in values.items())
    }


def compare_with_server(
    server: ServerProcess | None, result: Mapping[str, Any], expected: Mapping[str, Mapping[str, Any]]
) -> dict[str, int]:
    """Report vs server state: ``lost`` (not on the server, yet reported succeeded or not at all),
    ``phantom`` (reported failed, yet on the server), ``unreported`` (records the report misses).

    A stopped run does not read the rest of a list: the report counts those records
    (``records_not_read``), which are the list's last ones, so they count as reported, not lost.
    """
    done = written(server, expected) if server is not None else set()
    failed = set(result.get("failed_uuids") or [])
    not_read = int(result.get("records_not_read") or 0)
    order = list(expected)
    unread = set(order[len(order) - not_read :]) if not_read else set()
    reported = int(result.get("customers") or 0) + not_read
    return {
        "records": len(expected),
        "reported": reported,
        "not_read": not_read,
        "written": len(done),
        "lost": sum(1 for uuid in expected if uuid not in done and uuid not in failed and uuid not in unread),
        "phantom": len(failed & done) + len(unread & done),
        "unreported": max(len(expected) - reported, 0),
    }


def nothing_lost(results: Results, section: str, check: Mapping[str, int]) -> None:
    not_read = f" ({fmt_int(check['not_read'])} counted as not read)" if check.get("not_read") else ""
    results.target(
        section,
        f"{section}: nothing lost (report == server state)",
        f"{fmt_int(check['reported'])}/{fmt_int(check['records'])} records reported{not_read}, "
        f"{fmt_int(check['written'])} written, {check['lost']} lost, {check['phantom']} reported "
        "failed but written",
        "0 lost, every record reported",
        check["lost"] == 0 and check["unreported"] == 0 and check["phantom"] == 0,
    )


def push(
    runner: Runner,
    server: ServerProcess,
    count: int,
    *,
    extra: Mapping[str, Any] | None = None,
    operator: Mapping[str, Any] | None = None,
    timeout: float = 900.0,
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, int]]:
    """Push ``count`` records by uuid to a seeded server: the case's figures (with the server's
    statistics), the request log, and the report compared with the server's state."""
    result = runner.run_case(
        "provider",
        {"source": "uuid", "count": count, "operator": dict(operator or {})},
        timeout=timeout,
        env=runner.provider_env(server.url, extra),
    )
    result["server"] = server.stats()
    log = server_log(server)
    expected = {customer_uuid(i): expected_custom(i) for i in range(count)}
    return result, log, compare_with_server(server, result, expected)


def requests_summary(result: Mapping[str, Any]) -> str:
    hook = result.get("requests") or {}
    return (
        f"{hook.get('requests')} requests, {hook.get('retries')} retries, by status {hook.get('by_status')}"
    )


def say_provider(result: Mapping[str, Any]) -> None:
    """A provider run's requests and retries, then its first failures."""
    say(f"   provider: {requests_summary(result)}")
    say_failures("provider", result)
