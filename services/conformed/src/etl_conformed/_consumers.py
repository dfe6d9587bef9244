"""Which models consume which staging source entity, read from the dbt project itself (its manifest),
for every domain the project holds: nothing here names an entity or a model.

A model consumes a source entity when its config carries ``meta: {etl_consumes: {source, entity}}``;
the ``history_config`` macro sets it on every history model, and a team's own consuming model may
declare it the same way. The consumer is the model that records the pulls it read in
``conformed.consumed_pulls`` (its name is the ``consumer`` column there).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from etl_shared import ConfigurationError
from etl_shared._dbt import model_label, models_declaring

#: The meta key a consuming model declares.
META_KEY = "etl_consumes"
#: The meta key of a model every run builds, new pulls or not (``true``).
EVERY_RUN_KEY = "etl_every_run"
#: The generic test whose arguments name a source entity's volume check (macros/tests.sql).
VOLUME_TEST = "pull_volume_within_band"


@dataclass(frozen=True)
class Consumer:
    """A model that consumes one source entity, and what a new pull of it makes a run build."""

    model: str
    source: str
    entity: str
    #: dbt selectors: the model's parent models and everything downstream of them (the model itself
    #: when it reads staging directly).
    selectors: tuple[str, ...]


@dataclass
class ProjectConsumers:
    """The consumers and volume tests of a project, by (source, entity)."""

    consumers: dict[tuple[str, str], list[Consumer]] = field(default_factory=dict)
    volume_tests: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    every_run: list[str] = field(default_factory=list)

    @property
    def entities(self) -> set[tuple[str, str]]:
        return set(self.consumers)

    def consumer_names(self) -> set[str]:
        return {c.model for found in self.consumers.values() for c in found}


def consumers_from_manifest(manifest: dict[str, Any]) -> ProjectConsumers:
    """The consumers declared in a dbt manifest (manifest.json as a dict)."""
    nodes: dict[str, Any] = manifest.get("nodes", {})
    consumers: dict[tuple[str, str], list[Consumer]] = defaultdict(list)
    volume: dict[tuple[str, str], list[str]] = defaultdict(list)
    for _, node in sorted(nodes.items()):
        metadata = node.get("test_metadata") or {}
        if node.get("resource_type") == "test" and metadata.get("name") == VOLUME_TEST:
            kwargs = metadata.get("kwargs") or {}
            volume[(str(kwargs.get("source_name")), str(kwargs.get("entity")))].append(node["name"])
    every_run = [node["name"] for node, value in models_declaring(manifest, EVERY_RUN_KEY) if value is True]
    for node, declared in models_declaring(manifest, META_KEY):
        if not isinstance(declared, dict) or not declared.get("source") or not declared.get("entity"):
            raise ConfigurationError(
                f"{model_label(node)}: meta {META_KEY} must be {{source: <source>, entity: <entity>}},"
                f" not {declared!r}"
            )
        parents = [
            nodes[parent]["name"]
            for parent in node.get("depends_on", {}).get("nodes", [])
            if parent.startswith("model.") and parent in nodes
        ]
        selectors = tuple(f"{name}+" for name in sorted(parents)) or (f"{node['name']}+",)
        key = (str(declared["source"]), str(declared["entity"]))
        consumers[key].append(Consumer(node["name"], key[0], key[1], selectors))
    return ProjectConsumers(dict(consumers), dict(volume), every_run)
