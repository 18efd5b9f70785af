"""The container deployment: Containerfile, compose.yaml and the runtime lock.

Without any container engine: the build stage's own steps (its COPY list and RUN
lines, read from the Containerfile) run in a fresh virtual environment, whose console
script then applies the schema to a real PostgreSQL and serves, and the image's
HEALTHCHECK command is run against it; compose.yaml is read and checked against the
settings the CLI really accepts. With podman (marker `container`): the image is built
and checked, and the server is started from the image's own file system (chroot as
the image's user, since `podman run` may be unavailable) and its health check run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from packaging.markers import Marker

from autimit_csms import cli, settings
from autimit_csms.localpg import LocalPostgres, free_port

from .conftest import ROOT, new_database

# What only the test suite uses; none of it may be in the image.
TEST_TOOLS = {"pytest", "pytest-trio", "ruff", "mypy", "hypothesis", "trustme", "types-jsonschema",
              "selenium"}
COMPILERS = ("cc", "gcc", "g++", "c++", "clang", "x86_64-linux-gnu-gcc", "aarch64-linux-gnu-gcc")
TOKEN = "container-test-admin-token"


# --- reading the Containerfile ---------------------------------------------------------

@dataclass
class Stage:
    base: str
    name: str
    instructions: list[tuple[str, str]]

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def containerfile() -> list[Stage]:
    """Instructions per stage, continuation lines joined and comment lines dropped."""
    logical: list[str] = []
    pending = ""
    for raw in (ROOT / "Containerfile").read_text().splitlines():
        if raw.lstrip().startswith("#") or not raw.strip():
            continue
        if raw.endswith("\\"):
            pending += raw[:-1] + " "
            continue
        logical.append(pending + raw)
        pending = ""
    assert not pending, "Containerfile ends inside a continued line"
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.strip().partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            words = args.split()
            stages.append(Stage(words[0], words[2] if len(words) == 3 else "", []))
        elif stages:
            stages[-1].instructions.append((keyword, args))
    return stages


def stage(name: str) -> Stage:
    return next(s for s in containerfile() if s.name == name)


def env_of(stage: Stage) -> dict[str, str]:
    values: dict[str, str] = {}
    for args in stage.all("ENV"):
        for word in shlex.split(args):
            key, _, value = word.partition("=")
            values[key] = value
    return values


def healthcheck_command() -> list[str]:
    (args,) = stage("runtime").all("HEALTHCHECK")
    test = json.loads(args[args.index("CMD") + 3:].strip())
    assert isinstance(test, list) and test, args
    return test


def without_mounts(run: str) -> str:
    """A RUN line as a shell command: its --mount=... flags removed."""
    words = run.split(" ")
    while words and (words[0].startswith("--mount=") or not words[0]):
        words.pop(0)
    return " ".join(words)


# --- reading compose.yaml: the small subset of YAML it keeps to -------------------------

def _strip_comment(line: str) -> str:
    quote = ""
    for i, char in enumerate(line):
        if quote:
            if char == quote:
                quote = ""
            elif char == "\\" and quote == '"':
                continue
        elif char in "\"'":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i]
    return line


def _scalar(text: str) -> Any:
    if text[0] in "&*!|>{":
        raise ValueError(f"outside the YAML subset compose.yaml keeps to: {text!r}")
    if text[0] in '["':
        return json.loads(text)  # flow sequences of double-quoted strings, quoted strings
    if text[0] == "'":
        assert text.endswith("'"), text
        return text[1:-1].replace("''", "'")
    return text


def read_yaml(text: str) -> Any:
    """Block mappings and sequences by indentation, scalars kept as strings."""
    lines = []
    for raw in text.splitlines():
        line = _strip_comment(raw).rstrip()
        if line.strip():
            lines.append((len(line) - len(line.lstrip(" ")), line.strip()))

    def block(i: int, indent: int) -> tuple[Any, int]:
        if lines[i][1].startswith("- "):
            items = []
            while i < len(lines) and lines[i][0] == indent and lines[i][1].startswith("- "):
                items.append(_scalar(lines[i][1][2:].strip()))
                i += 1
            return items, i
        mapping: dict[str, Any] = {}
        while i < len(lines) and lines[i][0] == indent:
            match = re.fullmatch(r"([A-Za-z0-9_.-]+):(?:\s+(.*))?", lines[i][1])
            if match is None:
                raise ValueError(f"outside the YAML subset: {lines[i][1]!r}")
            key, rest = match.groups()
            assert key not in mapping, f"duplicate key {key}"
            i += 1
            if rest:
                mapping[key] = _scalar(rest)
            elif i < len(lines) and lines[i][0] > indent:
                mapping[key], i = block(i, lines[i][0])
            else:
                mapping[key] = None
        return mapping, i

    value, end = block(0, lines[0][0])
    if end != len(lines):
        raise ValueError(f"unexpected indentation at {lines[end][1]!r}")
    return value


def compose() -> dict[str, Any]:
    return read_yaml((ROOT / "compose.yaml").read_text())


def commented_settings(service: str) -> set[str]:
    """`# AUTIMIT_X: ...` lines inside one service's block: optional settings shown."""
    text = (ROOT / "compose.yaml").read_text()
    block = re.search(rf"(?ms)^  {service}:\n(.*?)(?=^  \S|^\S|\Z)", text)
    assert block, service
    return set(re.findall(r"(?m)^\s+#\s*(AUTIMIT_[A-Z0-9_]+):", block.group(1)))


# --- what the CLI really accepts --------------------------------------------------------

def subcommands(parser: argparse.ArgumentParser) -> Mapping[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    return {}


def accepted_env(parser: argparse.ArgumentParser) -> set[str]:
    """The AUTIMIT_* variables one (sub)command reads, from its flags' help."""
    return {name for action in parser._actions
            for name in re.findall(r"env (AUTIMIT_[A-Z0-9_]+)", action.help or "")}


def serve_and_apply_env() -> tuple[set[str], set[str]]:
    commands = subcommands(cli.build_parser())
    apply = subcommands(commands["db"])["apply"]
    return accepted_env(commands["serve"]), accepted_env(apply)


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """compose's ${NAME}, ${NAME:-default} and ${NAME:?message}."""
    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2) or "", match.group(3) or ""
        if env.get(name):
            return env[name]
        if op == ":?":
            raise KeyError(f"{name}: {arg}")
        return arg if op == ":-" else ""
    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:-|:\?)([^}]*))?\}", one, value)


# --- the lock files ---------------------------------------------------------------------

def read_lock(path: Path) -> dict[str, tuple[str, str, frozenset[str]]]:
    """name -> (version, marker, hashes) of a `uv pip compile --generate-hashes` file."""
    entries: dict[str, tuple[str, str, frozenset[str]]] = {}
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    for line in text.splitlines():
        if not line or line[0] in "# ":
            continue
        requirement, *hashes = line.split(" --hash=")
        spec, _, marker = requirement.partition(";")
        name, _, version = spec.strip().partition("==")
        entries[name.lower()] = (version, marker.strip(), frozenset(h.strip() for h in hashes))
    return entries


def test_runtime_lock_is_the_full_lock_without_the_test_tools() -> None:
    full = read_lock(ROOT / "requirements.lock")
    runtime = read_lock(ROOT / "requirements-runtime.lock")
    assert runtime and all(hashes for _, _, hashes in runtime.values())
    # Same versions and hashes as the lock the suite runs with (scripts/lock seeds one
    # from the other); markers may be narrower without the test extra.
    for name, (version, _, hashes) in runtime.items():
        assert name in full, f"{name} is in requirements-runtime.lock only"
        assert (version, hashes) == (full[name][0], full[name][2]), name
    assert not TEST_TOOLS & set(runtime)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for requirement in project["dependencies"]:
        name, version = re.match(r"([A-Za-z0-9_.-]+)(?:\[[^]]*\])?==([^;\s]+)",
                                 requirement).groups()  # type: ignore[union-attr]
        assert runtime[name.lower()][0] == version, requirement
    first = (ROOT / "requirements-runtime.lock").read_text().splitlines()[1]
    assert "uv pip compile pyproject.toml --python-version 3.11" in first
    assert "--extra" not in first and "--generate-hashes" in first


def test_containerfile_shape() -> None:
    stages = containerfile()
    assert [s.name for s in stages] == ["build", "runtime"]
    assert all(s.base == "${BASE_IMAGE}" for s in stages)
    text = (ROOT / "Containerfile").read_text()
    assert "ARG BASE_IMAGE=docker.io/library/python:3.11-slim-bookworm" in text
    build, runtime = stages
    installs = " ".join(build.all("RUN"))
    assert "--require-hashes" in installs and "-r requirements-runtime.lock" in installs
    assert "requirements.lock" not in installs.replace("requirements-runtime.lock", "")
    # The runtime stage takes only the venv and /app from the build stage.
    assert [args for args in runtime.all("COPY")] == [
        "--from=build /opt/venv /opt/venv", "--from=build /app /app"]
    assert runtime.all("USER") == ["autimit:autimit"]
    assert runtime.all("ENTRYPOINT") == ['["autimit-csms"]'] and runtime.all("CMD") == [
        '["serve"]']
    assert set(" ".join(runtime.all("EXPOSE")).split()) == {"9000", "8080"}
    env = env_of(runtime)
    assert env["AUTIMIT_OCPP_LISTEN"].endswith(":9000")
    assert env["AUTIMIT_API_LISTEN"].endswith(":8080")
    assert healthcheck_command()[:2] == ["python", "-c"]


# --- compose.yaml -----------------------------------------------------------------------

def test_compose_names_only_settings_that_exist_and_wires_every_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    serve_env, apply_env = serve_and_apply_env()
    # The parser and settings.py agree, and the logging variables of cli.py are there.
    assert {settings.env_name(name) for name, _, _ in settings._OPTIONS} <= serve_env
    assert {"AUTIMIT_LOG_LEVEL", "AUTIMIT_LOG_FORMAT"} <= serve_env

    text = (ROOT / "compose.yaml").read_text()
    unknown = set(re.findall(r"AUTIMIT_[A-Z0-9_]+", text)) - serve_env - apply_env
    assert not unknown, f"compose.yaml names settings that do not exist: {sorted(unknown)}"

    services = compose()["services"]
    assert set(services) == {"db", "schema", "csms"}
    csms_env: dict[str, str] = services["csms"]["environment"]
    optional = commented_settings("csms")
    # Only settings without a value meaning "off" may be left as commented examples.
    no_off_value = {settings.env_name(f) for f in ("tls_cert", "tls_key")}
    assert optional <= no_off_value, optional
    missing = serve_env - set(csms_env) - optional
    assert not missing, f"compose.yaml does not wire {sorted(missing)}"
    schema_env: dict[str, str] = services["schema"]["environment"]
    assert set(schema_env) - {"AUTIMIT_LOG_LEVEL", "AUTIMIT_LOG_FORMAT"} <= apply_env

    # With its defaults, the environment is one the real `serve` parser accepts.
    given = {"POSTGRES_PASSWORD": "pw", "AUTIMIT_ADMIN_TOKEN": "token"}
    resolved = {key: interpolate(value, given) for key, value in csms_env.items()}
    for key in serve_env:
        monkeypatch.delenv(key, raising=False)
    for key, value in resolved.items():
        monkeypatch.setenv(key, value)
    args = cli.build_parser().parse_args(["serve"])
    configured = settings.from_args(args)
    assert configured.database_url == "postgresql://autimit:pw@db:5432/autimit"
    assert configured.admin_token == "token" and configured.tls_cert is None
    assert args.log_format in ("text", "json") and args.log_level == "INFO"
    with pytest.raises(KeyError, match="AUTIMIT_ADMIN_TOKEN"):
        interpolate(csms_env["AUTIMIT_ADMIN_TOKEN"], {})

    # Ports inside the container are the published ones and the image's EXPOSE.
    ocpp_port = configured.ocpp_listen.rpartition(":")[2]
    api_port = configured.api_listen.rpartition(":")[2]
    published = {port.rpartition(":")[2] for port in services["csms"]["ports"]}
    assert published == {ocpp_port, api_port} == {"9000", "8080"}
    # The order: database healthy -> schema applied once -> serve.
    assert services["schema"]["command"] == ["db", "apply", "--timescale"]
    assert services["schema"]["depends_on"]["db"]["condition"] == "service_healthy"
    assert services["csms"]["depends_on"] == {
        "db": {"condition": "service_healthy"},
        "schema": {"condition": "service_completed_successfully"}}
    assert services["schema"]["image"] == services["csms"]["image"]
    assert services["csms"]["build"]["dockerfile"] == "Containerfile"
    assert services["csms"]["restart"] == "unless-stopped"
    assert services["csms"]["healthcheck"]["test"] == ["CMD", *healthcheck_command()]
    assert re.fullmatch(r"docker\.io/timescale/timescaledb:[0-9.]+-pg1[5-9]",
                        services["db"]["image"])  # not -oss: the Community edition
    assert services["db"]["healthcheck"]["test"][0] == "CMD-SHELL"


def test_the_yaml_reader_refuses_what_it_does_not_know() -> None:
    assert read_yaml("a:\n  b: 'x''y'  # c\n  c:\n    - \"1:2\"\n") == {
        "a": {"b": "x'y", "c": ["1:2"]}}
    with pytest.raises(ValueError):
        read_yaml("a: &anchor\n  b: 1\n")
    with pytest.raises(ValueError):
        read_yaml("a:\n    b: 1\n  c: 2\n")


# --- the build stage's steps in a fresh virtual environment ----------------------------

@dataclass
class Installed:
    app: Path
    env: dict[str, str]  # the runtime stage's environment, paths made local

    def run(self, *args: str, timeout: float = 120, env: Mapping[str, str] | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(args), cwd=cwd or self.app, env={**self.env, **(env or {})},
                              capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """/app and /opt/venv made by the build stage's COPY and RUN lines, run here."""
    base = tmp_path_factory.mktemp("image")
    app, venv, bin_dir = base / "app", base / "venv", base / "bin"
    app.mkdir()
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(sys.executable)  # the RUN lines call python3
    build = stage("build")
    assert build.all("WORKDIR") == ["/app"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTIMIT_", "PYTHON"))}
    env.update(env_of(build))
    env.pop("PIP_NO_CACHE_DIR", None)  # the same files, from pip's cache when it has them
    env["VIRTUAL_ENV"] = str(venv)
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    for keyword, args in build.instructions:
        if keyword == "COPY":
            *sources, dest = shlex.split(args)
            assert not any(s.startswith("--") for s in sources), args
            for source in sources:
                target = app / dest / source if dest.endswith("/") else app / dest
                if (ROOT / source).is_dir():
                    shutil.copytree(ROOT / source, target, dirs_exist_ok=True,
                                    ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy2(ROOT / source, target)
        elif keyword == "RUN":
            result = subprocess.run(["sh", "-c", without_mounts(args)], cwd=app, env=env,
                                    capture_output=True, text=True, timeout=600)
            assert result.returncode == 0, f"RUN {args}\n{result.stdout}\n{result.stderr}"
    runtime_env = {k: v for k, v in os.environ.items()
                   if not k.startswith(("AUTIMIT_", "PYTHON", "VIRTUAL_ENV"))}
    runtime_env.update(env_of(stage("runtime")))
    runtime_env["VIRTUAL_ENV"] = str(venv)
    runtime_env["PATH"] = runtime_env["PATH"].replace("/opt/venv/bin", str(venv / "bin"))
    return Installed(app, runtime_env)


def distributions(python: str, run: Any) -> set[str]:
    result = run(python, "-c", "import importlib.metadata as m; "
                 "print('\\n'.join(d.metadata['Name'] for d in m.distributions()))")
    assert result.returncode == 0, result.stderr
    return {re.sub(r"[-_.]+", "-", name).lower() for name in result.stdout.split()}


def wait_healthy(check: list[str], run: Any, proc: subprocess.Popen[str],
                 env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    deadline = time.monotonic() + 60
    while True:
        result = run(*check, env=env, timeout=10)
        if result.returncode == 0:
            return result
        assert proc.poll() is None, f"serve exited {proc.returncode}: {proc.stdout.read()}"
        assert time.monotonic() < deadline, result.stdout + result.stderr
        time.sleep(0.3)


@contextlib.contextmanager
def serving(command: list[str], env: Mapping[str, str],
            cwd: Path) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(command, env=dict(env), cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def check_serve(run: Any, command: list[str], env: Mapping[str, str], cwd: Path,
                health: list[str]) -> None:
    """Not healthy before `serve` runs, healthy while it does; the API answers with the
    admin token, the OCPP port accepts connections; SIGTERM stops it cleanly."""
    before = run(*health, env=env, timeout=10)
    assert before.returncode != 0, before.stdout
    with serving(command, env, cwd) as proc:
        healthy = wait_healthy(health, run, proc, env)
        assert "API answered" in healthy.stdout
        api = f"http://127.0.0.1:{env['AUTIMIT_API_LISTEN'].rpartition(':')[2]}"
        assert httpx.get(api + "/api/stations").status_code == 401
        stations = httpx.get(api + "/api/stations", headers={"Authorization": f"Bearer {TOKEN}"})
        assert stations.status_code == 200 and stations.json()["items"] == []
        with socket.create_connection(
                ("127.0.0.1", int(env["AUTIMIT_OCPP_LISTEN"].rpartition(":")[2])), timeout=5):
            pass
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, output
        assert "REST API on" in output and "OCPP-J 1.6 listener on" in output


def serve_env(base: Mapping[str, str], url: str) -> dict[str, str]:
    return {**base, "AUTIMIT_DATABASE_URL": url, "AUTIMIT_ADMIN_TOKEN": TOKEN,
            # the image's addresses (every interface), on ports free on this machine
            "AUTIMIT_API_LISTEN": f"0.0.0.0:{free_port()}",
            "AUTIMIT_OCPP_LISTEN": f"0.0.0.0:{free_port()}",
            "AUTIMIT_SHUTDOWN_GRACE": "1"}


def apply_and_upgrade(run: Any, pg: LocalPostgres) -> str:
    """`db apply` (with --timescale where this PostgreSQL has it, as compose.yaml runs it)
    and `db upgrade` on a new database; returns its URL."""
    url = pg.url(new_database(pg))
    env = {"AUTIMIT_DATABASE_URL": url}
    timescale = ["--timescale"] if pg.preload_timescaledb else []
    applied = run("autimit-csms", "db", "apply", *timescale, env=env)
    assert applied.returncode == 0, applied.stderr
    assert "schema applied" in applied.stdout
    upgraded = run("autimit-csms", "db", "upgrade", env=env)
    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT to_regclass('stations') IS NOT NULL").fetchone() == (True,)
        if timescale:
            assert conn.execute("SELECT count(*) > 0 FROM timescaledb_information.hypertables"
                                ).fetchone() == (True,)
    return url


def runtime_lock_names() -> set[str]:
    """The runtime lock's packages that install on this interpreter and platform."""
    return {name for name, (_, marker, _) in read_lock(ROOT / "requirements-runtime.lock").items()
            if not marker or Marker(marker).evaluate()}


def test_build_steps_in_a_fresh_venv_install_a_cli_that_applies_the_schema_and_serves(
        installed: Installed, pg: LocalPostgres) -> None:
    venv = Path(installed.env["VIRTUAL_ENV"])
    # The package and the files it reads are the copies the COPY lines made, not the
    # checkout (a file missing from the COPY lines fails here); run from / so that the
    # import goes through the installed package, not the current folder.
    where = installed.run(str(venv / "bin" / "python"), "-c",
                          "import autimit_csms.db.schema as s, autimit_csms.ocpp16.schemas as o;"
                          "print(s.SCHEMA, s.TIMESCALE_POLICIES, s.MIGRATIONS, "
                          "o.DEFAULT_SCHEMA_DIR)", cwd=Path("/"))
    assert where.returncode == 0, where.stderr
    app = installed.app
    assert where.stdout.split() == [str(app / "schema.sql"), str(app / "timescale_policies.sql"),
                                    str(app / "autimit_csms" / "db" / "migrations"),
                                    str(app / "ocpp_schemas")]
    # Exactly the runtime lock and the package: no test tools.
    installed_names = distributions(str(venv / "bin" / "python"), installed.run)
    assert installed_names - {"pip", "setuptools", "autimit-csms"} == runtime_lock_names()
    assert not TEST_TOOLS & installed_names

    help_text = installed.run("autimit-csms", "--help")
    assert help_text.returncode == 0 and "serve" in help_text.stdout
    url = apply_and_upgrade(installed.run, pg)
    check_serve(installed.run, ["autimit-csms", "serve"], serve_env(installed.env, url),
                installed.app, healthcheck_command())


# --- the image itself -------------------------------------------------------------------

IMAGE = "localhost/autimit-csms:test"
LOCAL_BASE = "localhost/autimit-base:3.11-bookworm"


def podman(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)


def image_id(name: str) -> str | None:
    result = podman("image", "inspect", "--format", "{{.Id}}", name)
    return result.stdout.strip() if result.returncode == 0 else None


def build_image() -> None:
    base = os.environ.get("AUTIMIT_CONTAINER_BASE", LOCAL_BASE)
    if base == LOCAL_BASE and image_id(base) is None:
        if shutil.which("debootstrap") is None:
            cannot(f"no base image {base} and no debootstrap to make it "
                        "(apt-get install debootstrap, or set AUTIMIT_CONTAINER_BASE)")
        made = subprocess.run(["bash", str(ROOT / "scripts" / "container-base.sh"), base],
                              capture_output=True, text=True, timeout=900)
        assert made.returncode == 0, made.stdout + made.stderr
    command = ["build", "--isolation", "chroot", "--format", "docker",
               "--build-arg", f"BASE_IMAGE={base}", "-t", IMAGE, "-f", "Containerfile"]
    # This machine's CA bundle for pip in the build (a TLS-intercepting proxy's CA may
    # be in it); a build secret, stored in no layer.
    cas = [os.environ.get(name) for name in ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")]
    ca = next((c for c in [*cas, "/etc/ssl/certs/ca-certificates.crt"] if c and Path(c).is_file()),
              None)
    if ca:
        command += ["--secret", f"id=ca-certificates,src={ca}"]
    before = image_id(IMAGE)
    built = subprocess.run(["podman", *command, str(ROOT)], capture_output=True, text=True,
                           timeout=1200)
    assert built.returncode == 0, built.stdout[-4000:] + built.stderr[-4000:]
    if before and before != image_id(IMAGE):
        podman("rmi", before)  # the previous test image, now untagged


def found_in(root: Path, names: set[str]) -> list[str]:
    hits = []
    for top in ("usr", "opt"):
        for folder, dirs, _ in os.walk(root / top):
            for name in dirs:
                stem = re.split(r"-\d", name.lower())[0].removesuffix(".dist-info")
                if stem.lstrip("_") in names:
                    hits.append(os.path.join(folder, name))
    return hits


def cannot(reason: str) -> None:
    """Skip with the reason; a failure where AUTIMIT_REQUIRE_CONTAINER=1 (.ci/run as root)."""
    if os.environ.get("AUTIMIT_REQUIRE_CONTAINER") == "1":
        pytest.fail(f"AUTIMIT_REQUIRE_CONTAINER=1 but {reason}")
    pytest.skip(reason)


@pytest.mark.container
def test_image_is_non_root_without_test_tools_and_serves_healthy(pg: LocalPostgres) -> None:
    if shutil.which("podman") is None:
        cannot("no container engine: podman is not installed (apt-get install podman); "
               "test_build_steps_in_a_fresh_venv... proves the same install steps")
    if os.geteuid() != 0:
        cannot("needs root: the image's files are run with chroot (podman image mount)")
    build_image()
    (info,) = json.loads(podman("image", "inspect", IMAGE).stdout)
    config = info["Config"]
    assert config["User"] == "autimit:autimit"
    assert config["Entrypoint"] == ["autimit-csms"] and config["Cmd"] == ["serve"]
    assert set(config["ExposedPorts"]) == {"9000/tcp", "8080/tcp"}
    assert info["Healthcheck"]["Test"] == ["CMD", *healthcheck_command()]
    image_env = dict(item.split("=", 1) for item in config["Env"])

    mounted = podman("image", "mount", IMAGE)
    assert mounted.returncode == 0, mounted.stderr
    root = Path(mounted.stdout.strip())
    try:
        passwd = (root / "etc" / "passwd").read_text()
        assert re.search(r"(?m)^autimit:x:10001:10001:", passwd), passwd
        assert not found_in(root, {"pytest", "ruff", "mypy", "hypothesis"})
        for folder in ("usr/bin", "usr/local/bin", "opt/venv/bin"):
            for compiler in COMPILERS:
                assert not os.path.lexists(root / folder / compiler), f"{folder}/{compiler}"

        inside = ["chroot", f"--userspec={config['User']}", str(root),
                  "env", "-C", config["WorkingDir"]]

        def run(*args: str, timeout: float = 120,
                env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
            return subprocess.run([*inside, *args], env={**image_env, **(env or {})},
                                  capture_output=True, text=True, timeout=timeout)

        help_text = run(*config["Entrypoint"], "--help")
        assert help_text.returncode == 0 and "serve" in help_text.stdout, help_text.stderr
        url = apply_and_upgrade(run, pg)
        check_serve(run, [*inside, *config["Entrypoint"], *config["Cmd"]],
                    serve_env(image_env, url), ROOT, info["Healthcheck"]["Test"][1:])
    finally:
        unmounted = podman("image", "unmount", IMAGE)
        assert unmounted.returncode == 0, unmounted.stderr
