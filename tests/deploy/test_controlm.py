"""controlm/: the Control-M folder and its deploy descriptors match the code, and the container wrapper
run-zone does what Control-M relies on (image name, variables by name only, exit codes).

Nothing here needs Control-M, a container runtime or a database: the JSON is checked against the
images' entrypoints (Dockerfiles and console scripts), the zones' real argument parsers, the sources
file, the exit codes of etl_shared and the run-id rule of the settings; run-zone runs for real with a
fake runtime that records what it was given.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest

from etl_shared import (
    EXIT_CONFIGURATION,
    EXIT_DATA_QUALITY,
    EXIT_DATABASE,
    EXIT_OK,
    EXIT_SOURCE,
    EXIT_UNEXPECTED,
    EtlError,
    Settings,
)

ROOT = Path(__file__).resolve().parents[2]
CONTROLM = ROOT / "controlm"
DEFINITIONS = CONTROLM / "zone-etl.json"
RUN_ZONE = CONTROLM / "bin" / "run-zone"
ENVIRONMENTS = ("dev", "test", "prod")
ZONES = ("staging", "conformed", "semantic")
PLACEHOLDER = re.compile(r"__[A-Z][A-Z_]*__")
#: The placeholders jules/stages/deploy.sh fills at deploy time (the released images), not the descriptors.
RELEASE_PLACEHOLDERS = {"__IMAGE_PREFIX__", "__IMAGE_TAG__"}
#: The variables run-zone reads; a job passes exactly these to it.
WRAPPER_VARIABLES = {
    "ETL_RUN_ID",
    "ETL_IMAGE_PREFIX",
    "ETL_IMAGE_TAG",
    "ETL_CONTAINER_RUNTIME",
    "ETL_CONTAINER_ENV_FILE",
    "ETL_CONTAINER_OPTS",
}
SAMPLE_ORDER_DATES = ("20250114", "20261231", "20300229")


# --- the definitions ---------------------------------------------------------------------------------


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def definitions() -> dict[str, Any]:
    return _load(DEFINITIONS)


def _folder(definitions: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    folders = [(name, obj) for name, obj in definitions.items() if obj.get("Type") == "Folder"]
    assert len(folders) == 1, f"expected one Folder in {DEFINITIONS.name}, found {[n for n, _ in folders]}"
    return folders[0]


def _jobs(definitions: dict[str, Any]) -> dict[str, dict[str, Any]]:
    _, folder = _folder(definitions)
    return {
        name: obj
        for name, obj in folder.items()
        if isinstance(obj, dict) and str(obj.get("Type", "")).startswith("Job:")
    }


def _folder_variables(definitions: dict[str, Any]) -> dict[str, str]:
    _, folder = _folder(definitions)
    variables: dict[str, str] = {}
    for entry in folder.get("Variables", []):
        assert isinstance(entry, dict) and len(entry) == 1, f"a Variables entry is one name: value: {entry}"
        variables.update(entry)
    return variables


def _resolve(text: str, variables: dict[str, str], order_date: str, job_name: str = "job") -> str:
    """Resolve %%NAME as Control-M does for the variables used here: the folder's variables and the
    system variables of the order date."""
    system = {"$ODATE": order_date, "ODATE": order_date[2:], "JOBNAME": job_name}
    pattern = re.compile(r"%%(\$?[A-Za-z_][A-Za-z0-9_]*)")
    for _ in range(10):
        if "%%" not in text:
            return text

        def value(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in system:
                return system[name]
            assert name in variables, f"%%{name} is neither a folder variable nor a known system variable"
            return variables[name]

        text = pattern.sub(value, text)
    raise AssertionError(f"variables do not resolve: {text}")


def _command(job: dict[str, Any], variables: dict[str, str], order_date: str = "20250114") -> list[str]:
    return shlex.split(_resolve(job["Command"], variables, order_date))


def _split_command(words: list[str]) -> tuple[dict[str, str], str, str, list[str]]:
    """`env NAME=VALUE... <path>/run-zone <zone> <args>` -> (assignments, wrapper, zone, args)."""
    assert words[0] == "env", f"a job command starts with env NAME=VALUE...: {words}"
    assignments: dict[str, str] = {}
    index = 1
    while index < len(words) and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[index]):
        name, _, value = words[index].partition("=")
        assignments[name] = value
        index += 1
    wrapper, zone, *args = words[index:]
    return assignments, wrapper, zone, args


def _job_zones(definitions: dict[str, Any]) -> dict[str, tuple[str, list[str]]]:
    variables = _folder_variables(definitions)
    result = {}
    for name, job in _jobs(definitions).items():
        _, _, zone, args = _split_command(_command(job, variables))
        result[name] = (zone, args)
    return result


class _Parsed(Exception):
    def __init__(self, namespace: argparse.Namespace) -> None:
        super().__init__("parsed")
        self.namespace = namespace


def _parse_with_real_cli(zone: str, args: list[str], monkeypatch: pytest.MonkeyPatch) -> argparse.Namespace:
    """Parse `args` with the zone's own entrypoint (the console script etl-<zone> that the image's
    ENTRYPOINT runs), stopping right after its argument parser: a renamed or removed flag fails here."""
    scripts = [ep for ep in entry_points(group="console_scripts") if ep.name == f"etl-{zone}"]
    assert scripts, f"no console script etl-{zone} installed"
    main = scripts[0].load()
    original = argparse.ArgumentParser.parse_args

    def parse_args(self: argparse.ArgumentParser, *a: Any, **kw: Any) -> argparse.Namespace:
        raise _Parsed(original(self, *a, **kw))

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_args)
    try:
        main(args)
    except _Parsed as parsed:
        return parsed.namespace
    except SystemExit as exc:
        raise AssertionError(f"etl-{zone} rejects the arguments {args} (exit {exc.code})") from None
    finally:
        monkeypatch.setattr(argparse.ArgumentParser, "parse_args", original)
    raise AssertionError(f"etl-{zone} {args} did not parse its arguments")


def _demo_sources() -> list[str]:
    from etl_staging._config import load_sources
    from etl_staging.cli import bundled_sources_file

    return [source.name for source in load_sources(bundled_sources_file()).sources]


def _flow_edges(definitions: dict[str, Any]) -> set[tuple[str, str]]:
    _, folder = _folder(definitions)
    edges = set()
    for obj in folder.values():
        if isinstance(obj, dict) and obj.get("Type") == "Flow":
            sequence = obj["Sequence"]
            assert len(sequence) >= 2, f"a Flow orders at least two jobs: {sequence}"
            edges.update(itertools.pairwise(sequence))
    return edges


def _actions(job: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(completion status, action) for every action of the job's If:CompletionStatus blocks."""
    for value in job.values():
        if isinstance(value, dict) and value.get("Type") == "If:CompletionStatus":
            for action in value.values():
                if isinstance(action, dict):
                    yield value["CompletionStatus"], action


def test_definitions_are_one_folder_of_command_jobs(definitions: dict[str, Any]) -> None:
    name, folder = _folder(definitions)
    assert len(definitions) == 1, "the file holds the one folder"
    assert folder.get("ControlmServer") and folder.get("Application")
    types = {obj["Type"] for obj in folder.values() if isinstance(obj, dict) and "Type" in obj}
    assert types <= {"Job:Command", "Flow"}, f"unexpected object types in {name}: {types}"
    for job_name, job in _jobs(definitions).items():
        assert job["Type"] == "Job:Command", job_name
        assert job.get("Host") and job.get("RunAs") and job.get("Description"), job_name
        assert len(job_name) <= 64, f"Control-M job names are at most 64 characters: {job_name}"
        assert len(job["Command"]) <= 512, f"{job_name}: the command is longer than Control-M allows"


def test_one_staging_job_per_source_then_conformed_then_semantic(
    definitions: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs = _job_zones(definitions)
    by_zone: dict[str, list[str]] = {}
    for name, (zone, _) in jobs.items():
        by_zone.setdefault(zone, []).append(name)
    assert set(by_zone) == set(ZONES), f"jobs per zone: {by_zone}"
    assert len(by_zone["conformed"]) == 1 and len(by_zone["semantic"]) == 1

    sources = []
    for name in by_zone["staging"]:
        args = _parse_with_real_cli("staging", jobs[name][1], monkeypatch)
        assert args.command == "run", name
        assert args.source, f"{name}: a staging job pulls one source (--source)"
        assert getattr(args, "entity", None) is None, (
            f"{name}: a staging job pulls every entity of its source"
        )
        sources.append(args.source)
    demo = _demo_sources()
    assert sorted(sources) == sorted(demo), (
        f"one staging job per source of the demo's sources.yml: jobs for {sorted(sources)}, sources {sorted(demo)}"
    )


@pytest.mark.parametrize("zone", ZONES)
def test_job_arguments_are_accepted_by_the_zones_real_parser(
    definitions: dict[str, Any], zone: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs = [(name, args) for name, (z, args) in _job_zones(definitions).items() if z == zone]
    assert jobs, f"no job runs the {zone} zone"
    for name, args in jobs:
        namespace = _parse_with_real_cli(zone, args, monkeypatch)
        assert namespace.command == "run", (
            f"{name} must run the zone (etl-{zone} run), not {namespace.command}"
        )


@pytest.mark.parametrize("zone", ZONES)
def test_each_zone_has_an_image_whose_entrypoint_is_the_zone_cli(zone: str) -> None:
    dockerfile = ROOT / "services" / zone / "Dockerfile"
    if not dockerfile.is_file():
        pytest.skip(f"{dockerfile.relative_to(ROOT)} is not written yet: the image check waits for it")
    text = dockerfile.read_text(encoding="utf-8")
    entrypoint = re.findall(r"^ENTRYPOINT\s+(\[.*\])\s*$", text, re.MULTILINE)
    cmd = re.findall(r"^CMD\s+(\[.*\])\s*$", text, re.MULTILINE)
    assert entrypoint and json.loads(entrypoint[-1]) == [f"etl-{zone}"], (
        f'{dockerfile}: ENTRYPOINT must be ["etl-{zone}"], the command run-zone\'s arguments go to'
    )
    assert cmd and json.loads(cmd[-1]) == ["run"], f'{dockerfile}: default CMD must be ["run"]'
    assert any(ep.name == f"etl-{zone}" for ep in entry_points(group="console_scripts"))


def test_every_job_runs_run_zone_with_the_folder_variables(definitions: dict[str, Any]) -> None:
    variables = _folder_variables(definitions)
    wrapper_text = RUN_ZONE.read_text(encoding="utf-8")
    for name, job in _jobs(definitions).items():
        assignments, wrapper, zone, _ = _split_command(_command(job, variables))
        assert Path(wrapper).name == "run-zone", f"{name}: the job runs run-zone, not {wrapper}"
        assert zone in ZONES, f"{name}: unknown zone {zone}"
        assert set(assignments) == WRAPPER_VARIABLES, f"{name}: passes {sorted(assignments)}"
        for variable in assignments:
            assert f"${{{variable}" in wrapper_text or f"${variable}" in wrapper_text, (
                f"run-zone does not read {variable}"
            )
        # The raw command refers to the folder variables, it does not hard-code values.
        for variable in WRAPPER_VARIABLES:
            assert f"{variable}=%%{variable}" in job["Command"], f"{name}: {variable} must be %%{variable}"
    assert set(WRAPPER_VARIABLES) | {"ETL_HOME", "ETL_ALERT_MAIL"} == set(variables), sorted(variables)


@pytest.mark.parametrize(
    "path", [DEFINITIONS, *(CONTROLM / "deploy" / f"{env}.json" for env in ENVIRONMENTS)]
)
def test_no_secret_value_is_in_the_definitions(path: Path) -> None:
    """Secrets reach the container as podman secrets or through the env file, never through Control-M."""
    text = path.read_text(encoding="utf-8")
    for forbidden in ("ETL_DATABASE_URL=", "ETL_PII_KEY=", "password", "://"):
        haystack = text.lower() if forbidden.islower() else text
        assert forbidden not in haystack, f"{path.name} contains {forbidden!r}"


def test_flow_runs_every_staging_job_in_parallel_then_conformed_then_semantic(
    definitions: dict[str, Any],
) -> None:
    zones = {name: zone for name, (zone, _) in _job_zones(definitions).items()}
    edges = _flow_edges(definitions)
    staging = {n for n, z in zones.items() if z == "staging"}
    (conformed,) = (n for n, z in zones.items() if z == "conformed")
    (semantic,) = (n for n, z in zones.items() if z == "semantic")
    assert {a for a, b in edges} | {b for a, b in edges} <= set(zones), (
        "a Flow names a job that does not exist"
    )
    expected = {(s, conformed) for s in staging} | {(conformed, semantic)}
    assert edges == expected, f"flow edges {sorted(edges)}, expected {sorted(expected)}"
    # Ordering is by Flow only: no hand-made events that could contradict it.
    for name, job in _jobs(definitions).items():
        for value in job.values():
            if isinstance(value, dict):
                assert not str(value.get("Type", "")).startswith(("WaitForEvents", "AddEvents")), name


def test_reruns_exactly_on_the_exit_codes_where_a_rerun_may_help(definitions: dict[str, Any]) -> None:
    def subclasses(cls: type) -> set[type]:
        found = set()
        for sub in cls.__subclasses__():
            found |= {sub} | subclasses(sub)
        return found

    retryable = {cls.exit_code for cls in subclasses(EtlError) if cls.retryable}
    assert retryable == {EXIT_SOURCE, EXIT_DATABASE}, (
        f"etl_shared's retryable exit codes changed: {retryable}"
    )
    for name, job in _jobs(definitions).items():
        rerun_on = set()
        for status, action in _actions(job):
            if action.get("Type") == "Action:Rerun":
                assert str(status).isdigit(), f"{name}: reruns only on exact exit codes, not on {status!r}"
                rerun_on.add(int(status))
        assert rerun_on == retryable, f"{name} reruns on {sorted(rerun_on)}, expected {sorted(retryable)}"
        assert EXIT_DATA_QUALITY not in rerun_on and EXIT_CONFIGURATION not in rerun_on
        assert EXIT_UNEXPECTED not in rerun_on and 143 not in rerun_on
        limit = job.get("RerunLimit", {})
        assert 1 <= int(limit.get("Times", 0)) <= 10, f"{name}: reruns are limited (RerunLimit.Times)"
        assert int(limit.get("Every", 0)) >= 1 and limit.get("Units") in {"Minutes", "Hours"}, name


def test_every_job_notifies_on_failure(definitions: dict[str, Any]) -> None:
    for name, job in _jobs(definitions).items():
        on_failure = [action for status, action in _actions(job) if status == "NOTOK"]
        types = {action.get("Type") for action in on_failure}
        assert {"Action:Mail", "Action:Notify"} <= types, f"{name}: mail and alert when it fails, has {types}"
        mail = next(a for a in on_failure if a["Type"] == "Action:Mail")
        assert mail.get("To") and mail.get("Subject") and "%%COMPSTAT" in mail["Subject"]
        notify = next(a for a in on_failure if a["Type"] == "Action:Notify")
        assert notify.get("Destination") == "Alerts" and notify.get("Message")


@pytest.mark.parametrize("order_date", SAMPLE_ORDER_DATES)
def test_run_id_from_the_order_date_is_a_valid_run_id(definitions: dict[str, Any], order_date: str) -> None:
    variables = _folder_variables(definitions)
    assert "%%" in variables["ETL_RUN_ID"], "the run id comes from Control-M's order date"
    run_id = _resolve(variables["ETL_RUN_ID"], variables, order_date)
    assert order_date in run_id
    assert Settings(run_id=run_id).run_id == run_id
    with pytest.raises(ValueError):
        Settings(run_id="not a run id")  # the check is live
    # Every job of the order gets the same run id.
    for job in _jobs(definitions).values():
        assignments, *_ = _split_command(_command(job, variables, order_date))
        assert assignments["ETL_RUN_ID"] == run_id


# --- deploy descriptors ------------------------------------------------------------------------------


def _objects(definitions: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for folder in definitions.values():
        yield folder
        for obj in folder.values():
            if isinstance(obj, dict) and "Type" in obj:
                yield obj


def _apply(definitions: dict[str, Any], rule: dict[str, Any]) -> None:
    """Apply one DeployDescriptor rule (the forms used here: Assign or Replace of a property, ApplyOn a
    Type, and the JSONPath $.Variables[*].*), asserting that it touches something that exists."""
    assert set(rule) <= {"Comment", "ApplyOn", "Property", "Assign", "Replace"}, rule
    assert ("Assign" in rule) != ("Replace" in rule), f"a rule assigns or replaces: {rule}"
    wanted = rule.get("ApplyOn", {}).get("Type")
    targets = [obj for obj in _objects(definitions) if wanted is None or obj.get("Type") == wanted]
    assert targets, f"ApplyOn {wanted} matches no object"
    prop = rule["Property"]
    touched = 0
    unused = {next(iter(r)) for r in rule.get("Replace", [])}
    for obj in targets:
        if prop == "$.Variables[*].*":
            holders = [(entry, key) for entry in obj.get("Variables", []) for key in entry]
        elif prop in obj:
            holders = [(obj, prop)]
        else:
            holders = []
        for holder, key in holders:
            touched += 1
            if "Assign" in rule:
                holder[key] = rule["Assign"]
                continue
            for replacement in rule["Replace"]:
                ((pattern, value),) = replacement.items()
                assert "$" not in value and "\\" not in value, f"{value!r} is special in a replacement"
                if re.search(pattern, holder[key]):
                    unused.discard(pattern)
                    holder[key] = re.sub(pattern, value, holder[key])
    assert touched, f"rule on {prop} (ApplyOn {wanted}) touches no existing property"
    assert not unused, f"replacements {sorted(unused)} of {prop} match no value"


def _placeholders(definitions: dict[str, Any]) -> set[str]:
    return set(PLACEHOLDER.findall(json.dumps(definitions)))


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_deploy_descriptor_sets_every_environment_value(definitions: dict[str, Any], env: str) -> None:
    descriptor = _load(CONTROLM / "deploy" / f"{env}.json")
    rules = descriptor["DeployDescriptor"]
    deployed = json.loads(json.dumps(definitions))
    for rule in rules:
        _apply(deployed, rule)
    assert _placeholders(definitions) >= RELEASE_PLACEHOLDERS
    assert _placeholders(deployed) == RELEASE_PLACEHOLDERS, (
        f"{env}: placeholders left for the descriptor to set: {_placeholders(deployed) - RELEASE_PLACEHOLDERS}"
    )
    folder = next(iter(deployed.values()))
    assert folder["ControlmServer"] and not PLACEHOLDER.search(folder["ControlmServer"])
    assert {job["Host"] for job in _jobs(deployed).values()} != {"__AGENT_HOST__"}


def test_deploy_descriptors_differ_per_environment() -> None:
    servers = {
        env: next(
            r["Assign"]
            for r in _load(CONTROLM / "deploy" / f"{env}.json")["DeployDescriptor"]
            if r["Property"] == "ControlmServer"
        )
        for env in ENVIRONMENTS
    }
    assert len(set(servers.values())) == len(ENVIRONMENTS), servers


# --- run-zone ----------------------------------------------------------------------------------------

FAKE_RUNTIME = """#!{python}
import json, os, signal, sys, time
record = os.environ["FAKE_RECORD"]
with open(record, "a", encoding="utf-8") as handle:
    handle.write(json.dumps({{"argv": sys.argv[1:], "env": dict(os.environ)}}) + "\\n")
if sys.argv[1:2] == ["stop"]:
    with open(record + ".pid") as handle:
        os.kill(int(handle.read()), signal.SIGTERM)
    sys.exit(0)
if os.environ.get("FAKE_SLEEP"):
    with open(record + ".pid", "w") as handle:
        handle.write(str(os.getpid()))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    time.sleep(float(os.environ["FAKE_SLEEP"]))
sys.exit(int(os.environ.get("FAKE_EXIT", "0")))
"""

SECRET_URL = "postgresql://etl:s3cr3t-pa55@warehouse:26257/etl"
PII_KEY = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"


@pytest.fixture
def fake_runtime(tmp_path: Path) -> Path:
    script = tmp_path / "fake-runtime"
    script.write_text(FAKE_RUNTIME.format(python=sys.executable), encoding="utf-8")
    script.chmod(0o755)
    return script


def _wrapper_env(fake_runtime: Path, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("ETL_", "FAKE_")) and key not in {"COV_CORE_SOURCE"}
    }
    env.update(
        ETL_CONTAINER_RUNTIME=str(fake_runtime),
        ETL_IMAGE_TAG="0123456789abcdef0123456789abcdef01234567",
        ETL_RUN_ID="ctm-20250114",
        ETL_DATABASE_URL=SECRET_URL,
        ETL_PII_KEY=PII_KEY,
        ETL_PUSHGATEWAY_URL="http://pushgateway:9091",
        FAKE_RECORD=str(tmp_path / "calls.jsonl"),
    )
    env.update(extra)
    return env


def _run_zone(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(RUN_ZONE), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def _calls(tmp_path: Path) -> list[dict[str, Any]]:
    record = tmp_path / "calls.jsonl"
    if not record.exists():
        return []
    return [json.loads(line) for line in record.read_text(encoding="utf-8").splitlines()]


def _passed_names(argv: list[str]) -> list[str]:
    return [argv[i + 1] for i, word in enumerate(argv) if word == "-e"]


def test_run_zone_runs_the_zone_image_with_variables_by_name_only(fake_runtime: Path, tmp_path: Path) -> None:
    env_file = tmp_path / "prod.env"
    env_file.write_text("ETL_LOG_LEVEL=INFO\n", encoding="utf-8")
    env = _wrapper_env(
        fake_runtime,
        tmp_path,
        ETL_IMAGE_PREFIX="registry.example.test/team/zone-etl",
        ETL_CONTAINER_OPTS="--network host --runtime /usr/sbin/runc",
        ETL_CONTAINER_ENV_FILE=str(env_file),
    )
    result = _run_zone(env, "staging", "run", "--source", "oltp")
    assert result.returncode == EXIT_OK, result.stderr
    (call,) = _calls(tmp_path)
    argv = call["argv"]
    image = "registry.example.test/team/zone-etl/staging:0123456789abcdef0123456789abcdef01234567"
    assert argv[:2] == ["run", "--rm"]
    assert argv[argv.index("--name") + 1].startswith("zone-etl-staging-ctm-20250114-")
    assert argv[argv.index(image) + 1 :] == ["run", "--source", "oltp"], "the zone arguments follow the image"
    before_image = argv[: argv.index(image)]
    assert before_image[before_image.index("--network") : before_image.index("--network") + 4] == [
        "--network",
        "host",
        "--runtime",
        "/usr/sbin/runc",
    ]
    assert before_image[before_image.index("--env-file") + 1] == str(env_file)
    names = _passed_names(argv)
    assert names[0] == "ETL_RUN_ID"
    assert {"ETL_DATABASE_URL", "ETL_PII_KEY", "ETL_PUSHGATEWAY_URL"} <= set(names)
    assert not [n for n in names if n.startswith(("ETL_IMAGE_", "ETL_CONTAINER_"))], names
    assert all("=" not in name for name in names), "variables go by name only"
    # No secret value on the runtime's command line nor in the log line; the runtime gets them from
    # its environment.
    for secret in (SECRET_URL, "s3cr3t-pa55", PII_KEY):
        assert not any(secret in word for word in argv)
        assert secret not in result.stderr and secret not in result.stdout
    assert call["env"]["ETL_DATABASE_URL"] == SECRET_URL
    assert "zone=staging" in result.stderr and image in result.stderr


def test_run_zone_default_prefix_and_default_command(fake_runtime: Path, tmp_path: Path) -> None:
    result = _run_zone(_wrapper_env(fake_runtime, tmp_path), "semantic")
    assert result.returncode == EXIT_OK, result.stderr
    (call,) = _calls(tmp_path)
    assert call["argv"][-1] == "zone-etl/semantic:0123456789abcdef0123456789abcdef01234567", (
        "no arguments: the image's CMD (run) applies"
    )


@pytest.mark.parametrize(
    "code", [EXIT_OK, EXIT_UNEXPECTED, EXIT_SOURCE, EXIT_DATA_QUALITY, EXIT_DATABASE, 143]
)
def test_run_zone_exits_with_the_containers_exit_code(fake_runtime: Path, tmp_path: Path, code: int) -> None:
    result = _run_zone(_wrapper_env(fake_runtime, tmp_path, FAKE_EXIT=str(code)), "conformed", "run")
    assert result.returncode == code, result.stderr


def test_run_zone_generates_a_valid_run_id_when_none_is_given(fake_runtime: Path, tmp_path: Path) -> None:
    env = _wrapper_env(fake_runtime, tmp_path)
    del env["ETL_RUN_ID"]
    assert _run_zone(env, "staging").returncode == EXIT_OK
    (call,) = _calls(tmp_path)
    run_id = call["env"]["ETL_RUN_ID"]
    assert Settings(run_id=run_id).run_id == run_id


def test_run_zone_names_each_container_uniquely(fake_runtime: Path, tmp_path: Path) -> None:
    env = _wrapper_env(fake_runtime, tmp_path, ETL_RUN_ID="ctm:2025.01.14")
    for _ in range(2):
        assert _run_zone(env, "staging", "run", "--source", "fx").returncode == EXIT_OK
    names = [c["argv"][c["argv"].index("--name") + 1] for c in _calls(tmp_path)]
    assert len(set(names)) == 2 and all(re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*", n) for n in names), names


@pytest.mark.parametrize(
    ("change", "args", "message"),
    [
        ({"ETL_IMAGE_TAG": ""}, ["staging"], "ETL_IMAGE_TAG is not set"),
        ({"ETL_IMAGE_TAG": "__IMAGE_TAG__"}, ["staging"], "placeholder"),
        ({"ETL_IMAGE_TAG": "bad tag"}, ["staging"], "not a valid image tag"),
        ({}, ["warehouse", "run"], "unknown zone 'warehouse'"),
        ({}, [], "usage: run-zone"),
        ({"ETL_RUN_ID": "no spaces allowed"}, ["staging"], "ETL_RUN_ID"),
        ({"ETL_CONTAINER_ENV_FILE": "/nonexistent/zone-etl.env"}, ["staging"], "ETL_CONTAINER_ENV_FILE"),
        ({"ETL_CONTAINER_RUNTIME": "/nonexistent/podman"}, ["staging"], "ETL_CONTAINER_RUNTIME"),
    ],
)
def test_run_zone_configuration_errors_exit_2_with_a_clear_message(
    fake_runtime: Path, tmp_path: Path, change: dict[str, str], args: list[str], message: str
) -> None:
    env = _wrapper_env(fake_runtime, tmp_path, **change)
    result = _run_zone(env, *args)
    assert result.returncode == EXIT_CONFIGURATION
    assert message in result.stderr, result.stderr
    assert _calls(tmp_path) == [], "nothing was started"


def test_run_zone_stops_the_container_on_sigterm(fake_runtime: Path, tmp_path: Path) -> None:
    env = _wrapper_env(fake_runtime, tmp_path, FAKE_SLEEP="30")
    process = subprocess.Popen(
        [str(RUN_ZONE), "conformed", "run"], env=env, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 20
    while not (tmp_path / "calls.jsonl.pid").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 143, stderr
    calls = [c["argv"] for c in _calls(tmp_path)]
    name = calls[0][calls[0].index("--name") + 1]
    assert ["stop", "--time", "30", name] in calls, calls


def test_run_zone_knows_the_zones_with_an_image() -> None:
    match = re.search(r"^readonly ZONES=\(([^)]*)\)", RUN_ZONE.read_text(encoding="utf-8"), re.MULTILINE)
    assert match and tuple(match.group(1).split()) == ZONES
    assert os.access(RUN_ZONE, os.X_OK)
