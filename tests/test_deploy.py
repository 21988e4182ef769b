"""The files in deploy/ (issue 13, item 4): cron mails one line when a job fails, the systemd
units load and are hardened, the log rotates, and every path is the one the env file sets.

The systemd tests need `systemd-analyze` and the rotation test `logrotate` (Debian's packages
systemd and logrotate); each is skipped where its program is missing. The cron tests run each
crontab job's own command line with /bin/sh, as cron does, against the fake API on loopback.
"""

from __future__ import annotations

import configparser
import fnmatch
import grp
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
ENV_FILE = "/etc/cekura-sessions.env"
EXECUTABLE = "/opt/cekura-sessions/bin/cekura-sessions"
SERVICES = ["cekura-sessions.service", "cekura-sessions-status.service"]
NEEDS_SYSTEMD = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")


def _env_file() -> dict[str, str]:
    pairs = {}
    for line in (DEPLOY / "cekura-sessions.env").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            pairs[name.strip()] = value.strip()
    return pairs


def _unit(name: str) -> configparser.RawConfigParser:
    unit = configparser.RawConfigParser(strict=False, delimiters=("=",), comment_prefixes=("#",))
    unit.optionxform = str  # systemd's keys are case-sensitive
    unit.read_string((DEPLOY / name).read_text())
    return unit


def _cron_jobs() -> dict[str, str]:
    """Each job's command, by the cekura-sessions command it runs."""
    jobs = {}
    for line in (DEPLOY / "crontab").read_text().splitlines():
        if line.strip() and not line.startswith("#") and not re.match(r"^\w+=", line):
            command = line.split(None, 5)[5]
            jobs[command.split()[-1]] = command
    return jobs


# --- paths in one place ---------------------------------------------------------------------------


def test_deploy_paths_are_the_ones_the_env_file_sets():
    env = _env_file()
    assert {"CEKURA_API_KEY", "CEKURA_DB", "CEKURA_LOG_FILE", "DLT_DATA_DIR"} <= env.keys(), env
    db, log_file, dlt_dir = Path(env["CEKURA_DB"]), Path(env["CEKURA_LOG_FILE"]), Path(env["DLT_DATA_DIR"])
    for name in SERVICES:
        service = _unit(name)["Service"]
        assert service["EnvironmentFile"] == ENV_FILE, name
        assert service["ExecStart"].split()[0] == EXECUTABLE, name
        assert Path("/var/lib") / service["StateDirectory"] == db.parent, f"{name}: StateDirectory is not CEKURA_DB's"
        assert Path("/var/lib") / service["StateDirectory"] in (dlt_dir, *dlt_dir.parents), name
        assert Path("/var/log") / service["LogsDirectory"] == log_file.parent, f"{name}: LogsDirectory, CEKURA_LOG_FILE"
        assert service["User"] == "cekura-sessions", name
    rotated = (DEPLOY / "cekura-sessions.logrotate").read_text().split("{", 1)[0].split()[-1]
    assert fnmatch.fnmatch(str(log_file), rotated), f"logrotate rotates {rotated}, the log is {log_file}"
    for job, command in _cron_jobs().items():
        assert f". {ENV_FILE} " in command and f"{EXECUTABLE} " in command, job
        assert ">" not in command, f"{job}: a redirection would keep cron from mailing the one line"


def test_every_unit_that_names_another_names_one_in_deploy():
    names = {path.name for path in DEPLOY.iterdir()}
    for timer in DEPLOY.glob("*.timer"):
        assert timer.name.replace(".timer", ".service") in names, timer.name
    for name in SERVICES:
        on_failure = _unit(name)["Unit"]["OnFailure"]
        assert on_failure == "cekura-sessions-notify@%n.service", name
        assert "cekura-sessions-notify@.service" in names


def test_readme_names_every_deploy_file():
    readme = (ROOT / "README.md").read_text()
    missing = [path.name for path in sorted(DEPLOY.iterdir()) if f"deploy/{path.name}" not in readme]
    assert missing == [], f"README.md does not name {missing}"


# --- systemd ----------------------------------------------------------------------------------------


@NEEDS_SYSTEMD
def test_systemd_units_verify_without_a_complaint(tmp_path):
    # verify checks that ExecStart's program exists: point it at one that does, change nothing else
    program = tmp_path / "cekura-sessions"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    units = []
    for path in sorted(DEPLOY.glob("*.service")) + sorted(DEPLOY.glob("*.timer")):
        name = path.name.replace("@.service", "@instance.service")  # a template verifies as an instance
        (tmp_path / name).write_text(path.read_text().replace(EXECUTABLE, str(program)))
        units.append(str(tmp_path / name))
    done = subprocess.run(["systemd-analyze", "verify", *units], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout + done.stderr) == (0, ""), done.stdout + done.stderr


@NEEDS_SYSTEMD
@pytest.mark.parametrize("name", SERVICES)
def test_systemd_service_exposure_is_at_most_4(name):
    done = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(DEPLOY / name)],
                          capture_output=True, text=True, timeout=120)
    found = re.search(r"Overall exposure level for \S+: ([\d.]+)", done.stdout)
    assert found, done.stdout + done.stderr
    assert float(found.group(1)) <= 4.0, done.stdout


STATUS_NETWORK = "cekura-sessions-status-network.conf"  # the drop-in for a PostgreSQL CEKURA_DB


def _with_drop_in(unit: str, drop_in: str) -> str:
    """The unit as systemd reads it with the drop-in: its sections appended, later lines winning."""
    return (DEPLOY / unit).read_text() + "\n" + (DEPLOY / drop_in).read_text()


def _effective(text: str, key: str) -> list[str]:
    """What systemd makes of `key`'s assignments in [Service]: an empty one resets the list."""
    values: list[str] = []
    section = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and line.startswith(f"{key}="):
            value = line.partition("=")[2].strip()
            values = [] if not value else ([*values, *value.split()] if key != "PrivateNetwork" else [value])
    return values


def test_the_status_drop_in_lets_status_reach_a_postgres_server():
    unit = _with_drop_in("cekura-sessions-status.service", STATUS_NETWORK)
    assert _effective(unit, "PrivateNetwork") == ["no"]
    assert _effective(unit, "IPAddressDeny") == []
    assert {"AF_INET", "AF_INET6", "AF_UNIX"} <= set(_effective(unit, "RestrictAddressFamilies"))
    shipped = (DEPLOY / "cekura-sessions-status.service").read_text()
    assert _effective(shipped, "PrivateNetwork") == ["yes"], "the shipped unit itself keeps no network"


@NEEDS_SYSTEMD
def test_the_status_unit_with_its_network_drop_in_verifies_and_stays_hardened(tmp_path):
    program = tmp_path / "cekura-sessions"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    merged = tmp_path / "cekura-sessions-status.service"
    merged.write_text(_with_drop_in("cekura-sessions-status.service", STATUS_NETWORK).replace(EXECUTABLE, str(program)))
    (tmp_path / "cekura-sessions-notify@.service").write_text((DEPLOY / "cekura-sessions-notify@.service").read_text())
    done = subprocess.run(["systemd-analyze", "verify", str(merged)], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout + done.stderr) == (0, ""), done.stdout + done.stderr
    done = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(merged)],
                          capture_output=True, text=True, timeout=120)
    found = re.search(r"Overall exposure level for \S+: ([\d.]+)", done.stdout)
    assert found and float(found.group(1)) <= 4.0, done.stdout + done.stderr


# --- cron -------------------------------------------------------------------------------------------


@pytest.fixture
def cron(tmp_path, api):
    """Each crontab job as cron would start it (/bin/sh -c, cron's small environment), with the
    env file's paths moved into the test's folder and the API pointed at the fake."""
    paths = {"CEKURA_DB": tmp_path / "lib" / "cekura.duckdb", "DLT_DATA_DIR": tmp_path / "lib" / "dlt",
             "CEKURA_LOG_FILE": tmp_path / "log" / "cekura-sessions.log"}
    for path in paths.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    from support.settings import API_KEY

    lines = [f"{name}={paths.get(name, value)}" for name, value in _env_file().items() if name != "CEKURA_API_KEY"]
    env_file = tmp_path / "cekura-sessions.env"
    env_file.write_text("\n".join([*lines, f"CEKURA_API_KEY={API_KEY}", f"CEKURA_BASE_URL={api.url}"]) + "\n")
    program = f"{sys.executable} -m cekura_sessions.cli"
    cron_env = {"PATH": "/usr/bin:/bin", "SHELL": "/bin/sh", "HOME": str(tmp_path), "LOGNAME": "cekura-sessions",
                "RUNTIME__DLTHUB_TELEMETRY": "false"}
    if os.environ.get("PYTHONPATH"):  # a checkout's package instead of the installed one
        cron_env["PYTHONPATH"] = os.environ["PYTHONPATH"]

    def run_job(job: str) -> subprocess.CompletedProcess:
        command = _cron_jobs()[job].replace(ENV_FILE, str(env_file)).replace(EXECUTABLE, program)
        return subprocess.run(["/bin/sh", "-c", command], env=cron_env, capture_output=True, text=True, timeout=180)

    run_job.paths = paths
    return run_job


def _log_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]  # any line that is not JSON fails


@pytest.mark.e2e
def test_crontab_jobs_print_nothing_on_success_and_one_line_on_failure(cron, api, dataset):
    from cekura_sessions.fake.server import Faults
    from support import expected

    night, morning = cron("run"), cron("status")
    assert (night.returncode, night.stdout, night.stderr) == (0, "", ""), night
    assert (morning.returncode, morning.stdout, morning.stderr) == (0, "", ""), morning

    victim = expected.listed_project_ids(dataset)[0]
    api.faults = Faults(always={victim: "404"})
    night, morning = cron("run"), cron("status")
    [line] = night.stdout.splitlines()
    assert night.returncode == 1 and night.stderr == "", night
    assert re.fullmatch(rf"cekura-sessions run \w+ exited 1, partial: 1 project\(s\) failed \(project {victim}: "
                        rf"HTTP 404 .*\) \(log: {re.escape(str(cron.paths['CEKURA_LOG_FILE']))}\)", line), line
    [line] = morning.stdout.splitlines()
    assert morning.returncode == 4 and line.startswith("cekura-sessions status exited 4: partial: "), line

    cron.paths["CEKURA_DB"].unlink()
    morning = cron("status")
    [line] = morning.stdout.splitlines()
    assert morning.returncode == 5 and line.startswith("cekura-sessions status exited 5: missing: "), line

    records = _log_records(cron.paths["CEKURA_LOG_FILE"])
    summaries = [r for r in records if r["message"].startswith("run ") and "exit_code" in r]
    assert [r["exit_code"] for r in summaries] == [0, 1], summaries
    run_ids = {r["run_id"] for r in summaries}
    assert len(run_ids) == 2 and None not in run_ids, summaries
    logged = [r for r in records if r["logger"] != "cekura_sessions.cli"]  # the run's own log records
    assert logged and all(r["run_id"] in run_ids for r in logged), logged


@pytest.mark.e2e
@pytest.mark.skipif(shutil.which("logrotate") is None, reason="logrotate is not installed")
def test_logrotate_rotates_the_log_and_the_next_run_starts_a_new_one(cron, tmp_path):
    log_file = cron.paths["CEKURA_LOG_FILE"]
    assert cron("run").returncode == 0
    first = _log_records(log_file)
    # the shipped rule, on the test's folder and as the test's own user
    rule = (DEPLOY / "cekura-sessions.logrotate").read_text()
    rule = rule.replace(str(Path(_env_file()["CEKURA_LOG_FILE"]).parent), str(log_file.parent))
    me = f"{pwd.getpwuid(os.getuid()).pw_name} {grp.getgrgid(os.getgid()).gr_name}"
    rule = rule.replace("cekura-sessions cekura-sessions", me)
    (tmp_path / "logrotate.conf").write_text(rule)
    done = subprocess.run(["logrotate", "--force", "--state", str(tmp_path / "logrotate.state"),
                           str(tmp_path / "logrotate.conf")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr

    assert cron("run").returncode == 0
    assert _log_records(log_file.with_name(log_file.name + ".1")) == first, "the rotated file is the first night's"
    second = _log_records(log_file)
    assert {r["run_id"] for r in second} & {r["run_id"] for r in first} == set(), "the new log has only the new run"
    assert second and (log_file.stat().st_mode & 0o777) == 0o640


def test_systemd_gives_a_night_longer_than_its_api_time_budget():
    """A throttle that never lifts ends the night at its time budget (the projects fetched load,
    exit 1); a TimeoutStartSec shorter than that would kill the run first (exit 143, nothing loaded)."""
    from cekura_sessions.api.retry import RetryPolicy

    timeout = _unit("cekura-sessions.service").get("Service", "TimeoutStartSec")
    number, unit = re.fullmatch(r"(\d+)(h|min|s)?", timeout).groups()
    seconds = int(number) * {"h": 3600, "min": 60, "s": 1, None: 1}[unit]
    assert seconds >= RetryPolicy().time_budget_seconds + 1800, (timeout, RetryPolicy().time_budget_seconds)
