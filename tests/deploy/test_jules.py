"""jules/: the release pipeline refers to scripts that exist and parse, tags images with the commit id
and never overwrites a tag, deploys through Control-M with the released tag, and asks for approval
before test and production.

The stage scripts run for real with fake `podman`, `ctm` and `trivy` programs written in tmp_path that
record their arguments; nothing touches a registry, Control-M or the network.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from etl_shared import EXIT_CONFIGURATION, EXIT_OK

ROOT = Path(__file__).resolve().parents[2]
JULES = ROOT / "jules"
STAGES = JULES / "stages"
PIPELINE = JULES / "pipeline.yml"
RUN_ZONE = ROOT / "controlm" / "bin" / "run-zone"
#: Stage scripts of another owner: checked when present, skipped with the reason when not yet written.
NOT_OURS = {"build.sh"}
#: Services with a Dockerfile that are not zones (not released, not run by Control-M): the sample
#: sources of docker-compose.
NOT_RELEASED = {"samples"}
EXPECTED_ORDER = [
    ("lint.sh", None),
    ("unit-tests.sh", None),
    ("integration-tests.sh", None),
    ("build.sh", None),
    ("scan.sh", None),
    ("push.sh", None),
    ("deploy.sh", "dev"),
    ("deploy.sh", "test"),
    ("deploy.sh", "prod"),
]
PREFIX = "registry.example.test/data/zone-etl"


def _head() -> str:
    if shutil.which("git") is None:
        pytest.skip("git is not installed: the release tag is the commit id")
    result = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"{ROOT} is not a git checkout: the release tag is the commit id")
    return result.stdout.strip()


@pytest.fixture(scope="module")
def pipeline() -> dict[str, Any]:
    document = yaml.safe_load(PIPELINE.read_text(encoding="utf-8"))
    assert isinstance(document, dict) and isinstance(document["pipeline"]["stages"], list)
    return document["pipeline"]


def _scripts() -> list[Path]:
    return [*sorted(STAGES.glob("*.sh")), RUN_ZONE]


def _zones(path: Path) -> list[str]:
    match = re.search(r"^(?:readonly )?ZONES=\(([^)]*)\)", path.read_text(encoding="utf-8"), re.MULTILINE)
    assert match, f"{path} declares no ZONES=(...)"
    return match.group(1).split()


# --- the pipeline definition -------------------------------------------------------------------------


def test_every_stage_calls_one_existing_executable_script(pipeline: dict[str, Any]) -> None:
    names = [stage["name"] for stage in pipeline["stages"]]
    assert len(names) == len(set(names)), f"stage names repeat: {names}"
    for stage in pipeline["stages"]:
        script = ROOT / stage["script"]
        assert script.parent == STAGES, f"stage {stage['name']}: scripts live in jules/stages/"
        if script.name in NOT_OURS and not script.exists():
            continue  # test_build_script_of_the_pipeline says so
        assert script.is_file(), f"stage {stage['name']}: {stage['script']} does not exist"
        assert os.access(script, os.X_OK), f"stage {stage['name']}: {stage['script']} is not executable"
        assert all(isinstance(arg, str) for arg in stage.get("args", [])), stage


def test_build_script_of_the_pipeline() -> None:
    build = STAGES / "build.sh"
    if not build.exists():
        pytest.skip("jules/stages/build.sh (the image build, another owner's) is not written yet")
    assert os.access(build, os.X_OK)
    text = build.read_text(encoding="utf-8")
    for zone in _zones(STAGES / "_common.sh"):
        assert zone in text, f"build.sh does not build the {zone} image"
    assert "ETL_IMAGE_PREFIX:-zone-etl" in text, "build.sh names the images zone-etl/<zone>:<tag> by default"


def test_stages_run_in_release_order(pipeline: dict[str, Any]) -> None:
    order = [
        (
            Path(stage["script"]).name,
            (stage.get("args") or [None])[0] if "deploy" in stage["script"] else None,
        )
        for stage in pipeline["stages"]
    ]
    assert order == EXPECTED_ORDER


def test_test_and_prod_deploys_need_a_manual_approval(pipeline: dict[str, Any]) -> None:
    deploys = {
        stage["args"][0]: stage for stage in pipeline["stages"] if stage["script"].endswith("deploy.sh")
    }
    assert set(deploys) == {"dev", "test", "prod"}
    for env in ("test", "prod"):
        approval = deploys[env].get("approval") or {}
        assert approval.get("required") is True, f"deploy to {env} needs a manual approval"
        assert approval.get("groups"), f"deploy to {env}: who approves"
    assert not (deploys["dev"].get("approval") or {}).get("required"), "dev deploys without waiting"
    for env in deploys:
        assert (ROOT / "controlm" / "deploy" / f"{env}.json").is_file()


def test_images_are_tagged_with_the_commit_id(pipeline: dict[str, Any]) -> None:
    environment = pipeline["environment"]
    assert re.fullmatch(r"\$\{[A-Z_]*COMMIT[A-Z_]*\}", environment["IMAGE_TAG"]), environment["IMAGE_TAG"]
    for stage in pipeline["stages"]:
        if Path(stage["script"]).name in {"build.sh", "scan.sh"}:
            assert stage.get("args") == ["${IMAGE_TAG}"], stage
    assert environment.get("ALLOW_NO_SCANNER", "0") == "0", "releases are scanned"


# --- the scripts -------------------------------------------------------------------------------------


@pytest.mark.parametrize("script", _scripts(), ids=lambda p: p.name)
def test_script_parses(script: Path) -> None:
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_scripts_are_shellcheck_clean() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    ours = [str(p.relative_to(ROOT)) for p in _scripts() if p.name not in NOT_OURS]
    result = subprocess.run([shellcheck, "-x", *ours], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_zones_of_the_scripts_are_the_zone_images() -> None:
    dockerfiles = {p.parent.name for p in (ROOT / "services").glob("*/Dockerfile")}
    if not dockerfiles:
        pytest.skip("no services/*/Dockerfile yet")
    zones = _zones(STAGES / "_common.sh")
    assert _zones(RUN_ZONE) == zones, "run-zone and the stage scripts know the same zones"
    assert set(zones) == dockerfiles - NOT_RELEASED, (
        f"zones {zones}, Dockerfiles of {sorted(dockerfiles)} (not released: {sorted(NOT_RELEASED)})"
    )
    for zone in zones:
        text = (ROOT / "services" / zone / "Dockerfile").read_text(encoding="utf-8")
        assert re.search(rf'^ENTRYPOINT \["etl-{zone}"\]', text, re.MULTILINE), zone


def test_test_stages_cover_every_marker_once() -> None:
    """Every registered pytest marker is excluded from unit-tests.sh and selected by integration-tests.sh,
    so a new kind of slow test cannot silently fall out of the pipeline (or run in both)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    markers = {m.split(":")[0].strip() for m in config["tool"]["pytest"]["ini_options"]["markers"]}
    unit = re.search(r"UNIT_MARKERS:-([^}]*)\}", (STAGES / "unit-tests.sh").read_text(encoding="utf-8"))
    integration = re.search(
        r"INTEGRATION_MARKERS:-([^}]*)\}", (STAGES / "integration-tests.sh").read_text(encoding="utf-8")
    )
    assert unit and integration
    unit_terms = set(re.findall(r"not (\w+)", unit.group(1)))
    integration_terms = set(re.findall(r"\w+", integration.group(1))) - {"or", "and", "not"}
    assert markers <= unit_terms, f"unit-tests.sh does not exclude {markers - unit_terms}"
    assert markers <= integration_terms, f"integration-tests.sh does not select {markers - integration_terms}"


# --- running the stages with fake tools ----------------------------------------------------------------

FAKE_TOOL = """#!{python}
import json, os, sys
args = sys.argv[1:]
entry = {{"tool": os.path.basename(sys.argv[0]), "argv": args}}
if args[:1] == ["login"]:
    entry["stdin"] = sys.stdin.read()
for i, word in enumerate(args):  # ctm build/deploy FILE DESCRIPTOR: keep the descriptor
    if word.endswith(".json") and os.path.exists(word) and i == 2:
        entry["descriptor"] = json.load(open(word))
if args[:1] == ["save"]:
    open(args[args.index("-o") + 1], "wb").write(b"image archive")
with open(os.environ["FAKE_RECORD"], "a") as handle:
    handle.write(json.dumps(entry) + "\\n")
if args[:2] == ["image", "inspect"]:
    sys.exit(1 if os.environ.get("FAKE_NO_LOCAL") else 0)
if args[:2] == ["manifest", "inspect"]:
    sys.exit(0 if os.environ.get("FAKE_REMOTE_EXISTS") else 1)
sys.exit(int(os.environ.get("FAKE_EXIT_" + entry["tool"].upper(), "0")))
"""


@pytest.fixture
def tools(tmp_path: Path) -> Path:
    folder = tmp_path / "bin"
    folder.mkdir()
    for name in ("podman", "ctm", "trivy"):
        tool = folder / name
        tool.write_text(FAKE_TOOL.format(python=sys.executable), encoding="utf-8")
        tool.chmod(0o755)
    return folder


def _stage_env(tools: Path, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("ETL_", "FAKE_", "IMAGE_", "RELEASE_", "CONTAINER_", "REGISTRY_", "CTM"))
        and key not in {"SCANNER", "ALLOW_NO_SCANNER", "SKOPEO", "LOCAL_IMAGE_PREFIX", "VERIFY_IMAGES"}
    }
    env.update(
        CONTAINER_RUNTIME=str(tools / "podman"),
        RELEASE_IMAGE_PREFIX=PREFIX,
        SKOPEO=str(tmp_path / "no-skopeo"),
        FAKE_RECORD=str(tmp_path / "calls.jsonl"),
    )
    env.update(extra)
    return env


def _stage(name: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(STAGES / name), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _calls(tmp_path: Path) -> list[dict[str, Any]]:
    record = tmp_path / "calls.jsonl"
    if not record.exists():
        return []
    return [json.loads(line) for line in record.read_text(encoding="utf-8").splitlines()]


def test_push_tags_and_pushes_every_zone_image_with_the_commit_id(tools: Path, tmp_path: Path) -> None:
    head = _head()
    env = _stage_env(tools, tmp_path, REGISTRY_USER="robot", REGISTRY_PASSWORD="robot-secret")
    result = _stage("push.sh", env)
    assert result.returncode == EXIT_OK, result.stderr
    calls = [c["argv"] for c in _calls(tmp_path)]
    zones = _zones(STAGES / "_common.sh")
    pushed = [argv[-1] for argv in calls if argv[0] == "push"]
    assert pushed == [f"{PREFIX}/{zone}:{head}" for zone in zones]
    for zone in zones:
        assert ["tag", f"zone-etl/{zone}:{head}", f"{PREFIX}/{zone}:{head}"] in calls
        assert ["manifest", "inspect", f"{PREFIX}/{zone}:{head}"] in calls, "looked up before pushing"
    login = next(c for c in _calls(tmp_path) if c["argv"][0] == "login")
    assert login["stdin"] == "robot-secret" and "robot-secret" not in login["argv"], "password through stdin"
    assert "robot-secret" not in result.stderr


def test_push_refuses_a_tag_that_already_exists(tools: Path, tmp_path: Path) -> None:
    head = _head()
    result = _stage("push.sh", _stage_env(tools, tmp_path, FAKE_REMOTE_EXISTS="1"))
    assert result.returncode != EXIT_OK
    assert "already exists" in result.stderr and head in result.stderr
    assert not [c for c in _calls(tmp_path) if c["argv"][0] in {"push", "tag"}], "nothing pushed"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"RELEASE_IMAGE_PREFIX": "zone-etl"}, "registry"),
        ({"RELEASE_IMAGE_PREFIX": ""}, "RELEASE_IMAGE_PREFIX"),
        ({"IMAGE_TAG": "latest"}, "commit id"),
        ({"IMAGE_TAG": "0" * 40}, "not the checked-out commit"),
        ({"FAKE_NO_LOCAL": "1"}, "build.sh"),
    ],
)
def test_push_refuses_what_is_not_an_immutable_release(
    tools: Path, tmp_path: Path, change: dict[str, str], message: str
) -> None:
    _head()
    result = _stage("push.sh", _stage_env(tools, tmp_path, **change))
    assert result.returncode == EXIT_CONFIGURATION, result.stderr
    assert message in result.stderr
    assert not [c for c in _calls(tmp_path) if c["argv"][0] == "push"]


@pytest.mark.parametrize("env_name", ["dev", "test", "prod"])
def test_deploy_runs_ctm_deploy_with_the_descriptor_and_the_released_tag(
    tools: Path, tmp_path: Path, env_name: str
) -> None:
    head = _head()
    env = _stage_env(
        tools, tmp_path, FAKE_REMOTE_EXISTS="1", CTM=str(tools / "ctm"), CTM_ENV=f"zone-etl-{env_name}"
    )
    result = _stage("deploy.sh", env, env_name)
    assert result.returncode == EXIT_OK, result.stderr
    calls = _calls(tmp_path)
    for zone in _zones(STAGES / "_common.sh"):
        assert {"tool": "podman", "argv": ["manifest", "inspect", f"{PREFIX}/{zone}:{head}"]} in calls
    (ctm,) = [c for c in calls if c["tool"] == "ctm"]
    assert ctm["argv"][:2] == ["deploy", "controlm/zone-etl.json"]
    assert ctm["argv"][3:] == ["-e", f"zone-etl-{env_name}"]
    rules = ctm["descriptor"]["DeployDescriptor"]
    original = json.loads((ROOT / "controlm" / "deploy" / f"{env_name}.json").read_text(encoding="utf-8"))
    assert rules[:-1] == original["DeployDescriptor"], "the environment's descriptor, unchanged"
    assert rules[-1]["Property"] == "$.Variables[*].*"
    assert rules[-1]["Replace"] == [{"__IMAGE_PREFIX__": PREFIX}, {"__IMAGE_TAG__": head}]


def test_deploy_build_only_validates_without_deploying(tools: Path, tmp_path: Path) -> None:
    _head()
    env = _stage_env(tools, tmp_path, FAKE_REMOTE_EXISTS="1", CTM=str(tools / "ctm"))
    result = _stage("deploy.sh", env, "dev", "--build-only")
    assert result.returncode == EXIT_OK, result.stderr
    (ctm,) = [c for c in _calls(tmp_path) if c["tool"] == "ctm"]
    assert ctm["argv"][:2] == ["build", "controlm/zone-etl.json"] and len(ctm["argv"]) == 3


@pytest.mark.parametrize(
    ("args", "change", "message"),
    [
        (["staging"], {}, "unknown environment"),
        ([], {}, "usage"),
        (["prod"], {"FAKE_REMOTE_EXISTS": ""}, "push.sh first"),
        (["prod"], {"CTM": "/nonexistent/ctm"}, "Automation API CLI"),
    ],
)
def test_deploy_refuses_wrong_use(
    tools: Path, tmp_path: Path, args: list[str], change: dict[str, str], message: str
) -> None:
    _head()
    env = _stage_env(tools, tmp_path, FAKE_REMOTE_EXISTS="1", CTM=str(tools / "ctm"))
    env.update(change)
    result = _stage("deploy.sh", env, *args)
    assert result.returncode == EXIT_CONFIGURATION, result.stderr
    assert message in result.stderr
    assert not [c for c in _calls(tmp_path) if c["tool"] == "ctm"]


def test_scan_saves_and_scans_every_zone_image(tools: Path, tmp_path: Path) -> None:
    tag = "0123456789abcdef0123456789abcdef01234567"
    result = _stage("scan.sh", _stage_env(tools, tmp_path, SCANNER=str(tools / "trivy")), tag)
    assert result.returncode == EXIT_OK, result.stderr
    calls = _calls(tmp_path)
    zones = _zones(STAGES / "_common.sh")
    saved = [c["argv"][-1] for c in calls if c["argv"][0] == "save"]
    assert saved == [f"zone-etl/{zone}:{tag}" for zone in zones]
    scans = [c["argv"] for c in calls if c["tool"] == "trivy"]
    assert len(scans) == len(zones) and all("--exit-code" in s and "--input" in s for s in scans)


def test_scan_fails_on_findings(tools: Path, tmp_path: Path) -> None:
    env = _stage_env(tools, tmp_path, SCANNER=str(tools / "trivy"), FAKE_EXIT_TRIVY="1")
    result = _stage("scan.sh", env, "0123456789abcdef0123456789abcdef01234567")
    assert result.returncode != EXIT_OK and "vulnerabilities found" in result.stderr


def test_scan_without_a_scanner_fails_unless_allowed(tools: Path, tmp_path: Path) -> None:
    if shutil.which("trivy") or shutil.which("grype"):
        pytest.skip("a scanner is installed on this machine: the no-scanner path is not reachable")
    tag = "0123456789abcdef0123456789abcdef01234567"
    refused = _stage("scan.sh", _stage_env(tools, tmp_path), tag)
    assert refused.returncode != EXIT_OK and "cannot scan" in refused.stderr
    allowed = _stage("scan.sh", _stage_env(tools, tmp_path, ALLOW_NO_SCANNER="1"), tag)
    assert allowed.returncode == EXIT_OK and "NOT scanned" in allowed.stderr
