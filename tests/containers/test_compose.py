"""docker-compose.yml: accepted by docker-compose, and wired the way DESIGN.md section 8 says."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
ZONES = ("staging", "conformed", "semantic")


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_docker_compose_accepts_the_file() -> None:
    tool = shutil.which("docker-compose")
    if tool is None:
        if os.environ.get("ETL_TEST_REQUIRE_CONTAINERS") == "1":
            pytest.fail("docker-compose is not installed (apt-get install docker-compose)")
        pytest.skip("docker-compose is not installed (Debian package docker-compose)")
    result = subprocess.run(
        [tool, "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert result.returncode == 0, result.stderr


def test_the_jobs_run_in_zone_order_after_the_database_setup() -> None:
    services = _compose()["services"]
    depends = {name: svc.get("depends_on", {}) for name, svc in services.items()}
    assert depends["staging"]["db-setup"] == {"condition": "service_completed_successfully"}
    assert depends["conformed"] == {"staging": {"condition": "service_completed_successfully"}}
    assert depends["semantic"] == {"conformed": {"condition": "service_completed_successfully"}}
    assert depends["db-setup"]["cockroach"] == {"condition": "service_healthy"}
    assert services["db-setup"]["entrypoint"] == ["python", "-m", "etl_shared.dbsetup"]


def test_each_job_runs_its_own_image_under_its_own_role() -> None:
    services = _compose()["services"]
    for zone in ZONES:
        svc = services[zone]
        assert svc["image"].startswith(f"zone-etl/{zone}:")
        url = svc["environment"]["ETL_DATABASE_URL"]
        assert url.startswith(f"postgresql://etl_{zone}@cockroach:26257/etl"), url
        assert svc.get("command", ["run"]) == ["run"]
        assert svc["environment"]["ETL_PUSHGATEWAY_URL"] == "http://pushgateway:9091"
    built = {svc["build"]["dockerfile"] for svc in services.values() if "build" in svc}
    assert {f"services/{zone}/Dockerfile" for zone in ZONES} <= built
    for dockerfile in built:
        assert (REPO / dockerfile).is_file(), dockerfile


def test_images_are_pinned_and_name_no_registry_host() -> None:
    for name, svc in _compose()["services"].items():
        image = svc["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and tag and tag != "latest", f"{name}: {image} is not pinned"
        first = repository.split("/")[0]
        assert "." not in first and ":" not in first, f"{name}: {image} names a registry host"
    assert re.fullmatch(r"cockroachdb/cockroach:v\d+\.\d+\.\d+", _compose()["services"]["cockroach"]["image"])


def test_every_bind_mount_exists_in_the_repository() -> None:
    for name, svc in _compose()["services"].items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (REPO / source).exists(), f"{name} mounts {source}, which does not exist"


def test_prometheus_loads_the_project_alert_rules() -> None:
    services = _compose()["services"]
    mount = next(v for v in services["prometheus"]["volumes"] if v.endswith(":/etc/prometheus:ro"))
    folder = REPO / mount.split(":")[0]
    config = yaml.safe_load((folder / "prometheus.yml").read_text())
    for rule_file in config["rule_files"]:
        assert (folder / Path(rule_file).name).is_file(), rule_file
    targets = [t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]]
    assert "pushgateway:9091" in targets
