"""Domains: a team's sources, models, rules and tests, kept apart from the platform.

A domain is a folder::

    <domain>/
        sources.yml        the staging zone's sources and entities (docs/configuration.md)
        conformed/         a dbt project: the domain's validated, history and current models, its
                           data-quality rules (seeds/dq_rules.csv), its freshness and volume tests
        semantic/          a dbt project: the domain's stars, aggregates and exports

each part optional. ``ETL_DOMAINS`` lists the folders (separated by ``:``, as PATH); unset, the
domains installed as Python distributions (entry point group ``etl.domains``; the demo's is
``domains/commerce``) are used.

A zone never runs a domain's dbt project on its own: it assembles one project for the zone under the
data folder (:func:`assemble_zone_project`), whose packages are the platform's (``etl_platform``:
macros, generic tests, the sources of the platform's tables, ISO reference seeds) and the zone's
project of every domain. dbt then parses and builds them together: one DAG, one set of threads,
refs across domains, and dbt's own check that no two models of any domain write the same table.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path
from typing import Any

import yaml

from ._errors import ConfigurationError
from ._files import write_atomically
from ._settings import absolute_path

ENTRY_POINT_GROUP = "etl.domains"
PLATFORM_PACKAGE = "etl_platform"
#: Folders a checksum of a domain's dbt project leaves out: what dbt writes when a team runs it
#: by hand, and Python's caches.
_NOT_SOURCE = frozenset({"target", "dbt_packages", "logs", "__pycache__"})


def platform_dir() -> Path:
    """The platform's dbt package (``etl_platform``), shipped inside etl_shared."""
    return Path(str(resources.files("etl_shared") / "dbt" / "platform"))


def root_macros_dir() -> Path:
    """The macros every zone's assembled project holds itself: those that replace dbt's own
    (schema names, CockroachDB column listing, the history and upsert incremental strategies, test
    filters). dbt looks such macros up in the root project only, not in packages."""
    return Path(str(resources.files("etl_shared") / "dbt" / "root" / "macros"))


@dataclass(frozen=True)
class Domain:
    name: str
    path: Path

    @property
    def sources_file(self) -> Path | None:
        path = self.path / "sources.yml"
        return path if path.is_file() else None

    def source_names(self) -> set[str]:
        """The names of the sources its sources.yml declares (none without one)."""
        if self.sources_file is None:
            return set()
        try:
            raw = yaml.safe_load(self.sources_file.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigurationError(f"{self.sources_file}: not valid YAML: {exc}") from None
        return {s["name"] for s in raw.get("sources") or [] if isinstance(s, dict) and "name" in s}

    def zone_dir(self, zone: str) -> Path | None:
        """The domain's dbt project for ``zone``, or None when it has none."""
        path = self.path / zone
        return path if (path / "dbt_project.yml").is_file() else None

    def package(self, zone: str) -> str:
        """The dbt project name of the domain's ``zone`` project (its package name in the zone)."""
        zone_dir = self.zone_dir(zone)
        if zone_dir is None:
            raise ConfigurationError(f"domain {self.name} ({self.path}) has no {zone}/dbt_project.yml")
        try:
            name = (yaml.safe_load((zone_dir / "dbt_project.yml").read_text(encoding="utf-8")) or {}).get(
                "name"
            )
        except yaml.YAMLError as exc:
            raise ConfigurationError(f"{zone_dir / 'dbt_project.yml'}: not valid YAML: {exc}") from None
        if not isinstance(name, str) or not name.isidentifier():
            raise ConfigurationError(f"{zone_dir / 'dbt_project.yml'}: `name` must be a dbt project name")
        return name


def installed_domains() -> list[Domain]:
    """The domains installed as Python distributions (entry points ``etl.domains``: name = module)."""
    found = []
    for entry in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        try:
            path = Path(str(resources.files(entry.value)))
        except ModuleNotFoundError as exc:
            raise ConfigurationError(f"installed domain {entry.name}: {exc}") from None
        found.append(Domain(entry.name, path))
    return found


def configured_domains(setting: str | None = None) -> list[Domain]:
    """The domains of this installation: the folders of ``setting`` (ETL_DOMAINS: folders separated
    by ``:``) or, unset, the installed domains. A folder that is not there, holds nothing a zone
    reads, or has the name of another is a configuration error naming it."""
    if setting is None:
        setting = os.environ.get("ETL_DOMAINS") or None
    if setting is None:
        domains = installed_domains()
        if not domains:
            raise ConfigurationError(
                "no domain: set ETL_DOMAINS to your domain folders (docs/domains.md), or install one"
            )
        return domains
    domains = []
    for part in (p.strip() for p in setting.split(os.pathsep)):
        if not part:
            continue
        path = absolute_path(part)
        if not path.is_dir():
            raise ConfigurationError(f"ETL_DOMAINS: {path} is not a folder")
        domain = Domain(path.name, path)
        if domain.sources_file is None and not any(domain.zone_dir(z) for z in ("conformed", "semantic")):
            raise ConfigurationError(
                f"ETL_DOMAINS: {path} holds no sources.yml, conformed/dbt_project.yml or"
                " semantic/dbt_project.yml: not a domain folder (docs/domains.md)"
            )
        domains.append(domain)
    names = [d.name for d in domains]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigurationError(f"ETL_DOMAINS: two domain folders are named {', '.join(duplicates)}")
    if not domains:
        raise ConfigurationError("ETL_DOMAINS is set but names no folder")
    return domains


def zone_packages(zone: str, domains: Sequence[Domain]) -> dict[str, Path]:
    """{package name: folder} of the zone's project: the platform, then each domain's ``zone`` project."""
    packages = {PLATFORM_PACKAGE: platform_dir()}
    for domain in domains:
        zone_dir = domain.zone_dir(zone)
        if zone_dir is None:
            continue
        name = domain.package(zone)
        if name in packages or name == zone:
            raise ConfigurationError(
                f"domain {domain.name}: its {zone} project is named {name}, as "
                + ("the zone's own project" if name == zone else f"another package ({packages[name]})")
                + "; give it another name in its dbt_project.yml"
            )
        packages[name] = zone_dir
    return packages


def _root_project(zone: str, packages: Mapping[str, Path]) -> dict[str, Any]:
    domain_packages = [name for name in packages if name != PLATFORM_PACKAGE]
    models: dict[str, Any] = {}
    seeds: dict[str, Any] = {}
    for name in packages:
        # Row hashes and version ids render timestamps as text: always in UTC, whatever the role's
        # default. (Hooks add up: a domain's own hooks run after this one.)
        models[name] = {"+pre-hook": "set time zone 'UTC'"}
        seeds[name] = {"+pre-hook": "set time zone 'UTC'"}
    for name in domain_packages:
        if (packages[name] / "seeds" / "dq_rules.csv").is_file():
            # every domain's rules seed has the same name (the platform's dq macros read the one of
            # the model's own package); its table is the domain's
            seeds[name]["dq_rules"] = {"+alias": f"{name}_dq_rules"}
    if zone != "conformed":
        # the ISO reference seeds are the conformed zone's tables; other zones read them there
        seeds[PLATFORM_PACKAGE]["+enabled"] = False
    return {
        "name": zone,
        "version": "0.1.0",
        "config-version": 2,
        "profile": zone,
        "model-paths": ["models"],
        "macro-paths": ["macros"],
        "seed-paths": ["seeds"],
        "test-paths": ["tests"],
        "packages-install-path": "dbt_packages",
        "clean-targets": [],
        "flags": {
            # dbt-postgres: with autocommit on (needed for CockroachDB) send no BEGIN/COMMIT of its own.
            "postgres_skip_autocommit_transaction_statements": True,
            # No usage events to dbt Labs: the warehouse runs on premises.
            "send_anonymous_usage_stats": False,
        },
        "models": models,
        "seeds": seeds,
    }


def assemble_zone_project(zone: str, domains: Sequence[Domain], root: Path) -> dict[str, Path]:
    """Write the zone's dbt project into ``root``: its dbt_project.yml, its macros (dbt's own that the
    platform replaces) and, under dbt_packages, a link to every package: the platform and each
    domain's ``zone`` project, as ``dbt deps`` links a local package. Rewritten on every run (links
    and files are compared first, so that dbt's partial parsing sees nothing new). Returns the
    packages."""
    packages = zone_packages(zone, domains)
    root.mkdir(parents=True, exist_ok=True)
    _write_if_changed(
        root / "dbt_project.yml",
        "# Written by the zone job from the domains (etl_shared._domains); do not edit.\n"
        + yaml.safe_dump(_root_project(zone, packages), sort_keys=False),
    )
    for folder in ("models", "seeds", "tests"):
        (root / folder).mkdir(exist_ok=True)
    _link(root / "macros", root_macros_dir())
    installed = root / "dbt_packages"
    installed.mkdir(exist_ok=True)
    for entry in installed.iterdir():
        if entry.name not in packages:
            entry.unlink() if entry.is_symlink() or entry.is_file() else shutil.rmtree(entry)
    for name, path in packages.items():
        _link(installed / name, path)
    return packages


def _link(link: Path, target: Path) -> None:
    if link.is_symlink() and Path(os.readlink(link)) == target:
        return
    if link.is_symlink() or link.is_file():
        link.unlink()
    elif link.is_dir():
        shutil.rmtree(link)
    link.symlink_to(target, target_is_directory=True)


def _write_if_changed(path: Path, text: str) -> None:
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        write_atomically(path, text.encode("utf-8"))


def folder_checksum(folder: Path) -> str:
    """A checksum of the files of a dbt project or package (names and contents)."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if not path.is_file() or _NOT_SOURCE.intersection(relative.parts):
            continue
        digest.update(b"\0" + str(relative).encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def package_checksums(packages: Mapping[str, Path], variables: Mapping[str, Any]) -> dict[str, str]:
    """A checksum per package of the zone's project, the platform's covering the root macros too,
    and one of the vars (``vars``): what decides which part of a zone a change rebuilds."""
    checksums = {
        "vars": hashlib.sha256(json.dumps(dict(variables), sort_keys=True, default=str).encode()).hexdigest()
    }
    for name, path in packages.items():
        checksums[name] = folder_checksum(path)
    checksums[PLATFORM_PACKAGE] = hashlib.sha256(
        (checksums[PLATFORM_PACKAGE] + folder_checksum(root_macros_dir())).encode()
    ).hexdigest()
    return checksums


def combined_checksum(checksums: Mapping[str, str]) -> str:
    return hashlib.sha256(json.dumps(dict(checksums), sort_keys=True).encode()).hexdigest()
