"""Source configuration: validation of the sources YAML, selection, source database URLs."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from etl_shared import ConfigurationError
from etl_staging import SourcesFile, load_sources
from etl_staging._config import DatabaseConnection, DatabaseSource, FileSource, resolve_database_url
from etl_staging.cli import bundled_sources_file

VALID = """
sources:
  - name: shop
    kind: database
    batch_size: 100
    connection: {url_env: SHOP_DATABASE_URL, embedded_database: shop}
    entities:
      - {name: customers, table: public.customers, key: [customer_id]}
      - {name: orders, table: public.orders, key: [order_id], cursor: updated_at}
  - name: web
    kind: file
    entities:
      - name: events
        keep_payload: false
        files:
          - {path: "{data_dir}/events/*.csv", format: csv, delimiter: ";", encoding: latin-1}
          - {path: "{data_dir}/events/*.xml", format: xml, records_path: event, rename: {id: event_id}}
      - name: accounts
        files: [{path: "{data_dir}/crm/accounts.jsonl", format: jsonl}]
"""


def write(tmp_path: Path, text: str, name: str = "sources.yml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def config_error(path: Path) -> str:
    with pytest.raises(ConfigurationError) as info:
        load_sources(path)
    return str(info.value)


def test_valid_file_is_parsed_into_typed_sources(tmp_path: Path) -> None:
    sources = load_sources(write(tmp_path, VALID))

    shop, web = sources.sources
    assert isinstance(shop, DatabaseSource)
    assert shop.batch_size == 100
    assert shop.connection.url_env == "SHOP_DATABASE_URL"
    assert [(e.name, e.table, e.key, e.cursor) for e in shop.entities] == [
        ("customers", "public.customers", ["customer_id"], None),
        ("orders", "public.orders", ["order_id"], "updated_at"),
    ]
    assert isinstance(web, FileSource)
    assert web.batch_size == 5000
    events = web.entities[0]
    assert events.keep_payload is False
    csv_group, xml_group = events.files
    assert (csv_group.format, csv_group.delimiter, csv_group.encoding) == ("csv", ";", "latin-1")
    assert (xml_group.records_path, xml_group.rename) == ("event", {"id": "event_id"})
    assert web.entities[1].files[0].encoding == "utf-8-sig"


@pytest.mark.parametrize(
    ("source_yaml", "expected"),
    [
        pytest.param(
            """
            - name: shop
              kind: database
              entities: [{name: orders, table: public.orders}]
            """,
            ["source 'shop'", "connection", "Field required"],
            id="database-without-connection",
        ),
        pytest.param(
            """
            - name: web
              kind: file
              entities: [{name: Bad-Name, files: [{path: x.csv, format: csv}]}]
            """,
            ["source 'web'", "entities.0.name", "pattern"],
            id="bad-entity-name",
        ),
        pytest.param(
            """
            - name: odd
              kind: ftp
              entities: [{name: e}]
            """,
            ["source 'odd'", "'ftp'", "kind"],
            id="unknown-kind",
        ),
        pytest.param(
            """
            - name: web
              kind: file
              colour: blue
              entities: [{name: e, files: [{path: x.csv, format: csv}]}]
            """,
            ["source 'web'", "colour", "Extra inputs are not permitted"],
            id="unknown-key",
        ),
        pytest.param(
            """
            - name: web
              kind: file
              entities: [{name: e, files: [{path: x.csv, format: csv, sheet: 1}]}]
            """,
            ["source 'web'", "entities.0.files.0.sheet", "Extra inputs"],
            id="unknown-nested-key",
        ),
        pytest.param(
            """
            - name: web
              kind: file
              entities: [{name: e, files: [{path: x.avro, format: avro}]}]
            """,
            ["source 'web'", "entities.0.files.0.format"],
            id="unknown-format",
        ),
        pytest.param(
            """
            - name: shop
              kind: database
              connection: {url_env: SHOP_URL}
              entities: [{name: orders, table: orders}]
            """,
            ["source 'shop'", "entities.0.table"],
            id="table-without-schema",
        ),
        pytest.param(
            """
            - name: web
              kind: file
              batch_size: 0
              entities: [{name: e, files: [{path: x.csv, format: csv}]}]
            """,
            ["source 'web'", "batch_size"],
            id="batch-size-zero",
        ),
        pytest.param(
            """
            - name: web
              kind: file
              entities: [{name: e, files: [{path: x.csv, format: csv}]}]
            - name: web
              kind: file
              entities: [{name: f, files: [{path: y.csv, format: csv}]}]
            """,
            ["'web'", "declared twice"],
            id="duplicate-source",
        ),
        pytest.param(
            """
            - name: web
              kind: file
              entities:
                - {name: e, files: [{path: x.csv, format: csv}]}
                - {name: e, files: [{path: y.csv, format: csv}]}
            """,
            ["'web'", "entity twice"],
            id="duplicate-entity",
        ),
    ],
)
def test_errors_name_file_source_and_field(tmp_path: Path, source_yaml: str, expected: list[str]) -> None:
    path = write(tmp_path, "sources:\n" + textwrap.indent(textwrap.dedent(source_yaml), "  "))

    message = config_error(path)

    assert str(path) in message
    for fragment in expected:
        assert fragment in message


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        sources:
          - {name: shop, kind: database, entities: [{name: orders, table: public.orders}]}
          - {name: web, kind: file, entities: [{name: Bad, files: [{path: x, format: csv}]}]}
        """,
    )

    message = config_error(path)

    assert "source 'shop' field connection" in message
    assert "source 'web' field entities.0.name" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sources: [unclosed", "not valid YAML"),
        ("- just\n- a list\n", "expected a mapping"),
        ("", "expected a mapping"),
        ("sources: []\n", "sources"),
        ("other: 1\n", "sources"),
    ],
)
def test_malformed_documents_are_configuration_errors(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)

    message = config_error(path)

    assert str(path) in message
    assert expected in message


def test_missing_file_is_a_configuration_error(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yml"

    message = config_error(path)

    assert str(path) in message
    assert "does not exist" in message


@pytest.mark.parametrize(
    ("source_yaml", "where"),
    [
        (
            "{name: shop, kind: database, connection: {url_env: SHOP_URL, password: hunter2}, entities: []}",
            "sources[0].connection.password",
        ),
        (
            "{name: shop, kind: database, connection: {url_env: SHOP_URL, url: 'postgresql://u:p@h/db'}}",
            "sources[0].connection.url",
        ),
        ("{name: api, kind: file, entities: [{name: e, token: abc123}]}", "sources[0].entities[0].token"),
    ],
)
def test_inline_secrets_are_refused_naming_the_path(tmp_path: Path, source_yaml: str, where: str) -> None:
    path = write(tmp_path, f"sources:\n  - {source_yaml}\n")

    message = config_error(path)

    assert "inline secret" in message
    assert where in message
    assert str(path) in message
    # The secret itself never appears in the error.
    for secret in ("hunter2", "u:p@h", "abc123"):
        assert secret not in message


@pytest.fixture
def sources(tmp_path: Path) -> SourcesFile:
    return load_sources(write(tmp_path, VALID))


def test_select_without_filters_gives_every_entity(sources: SourcesFile) -> None:
    pairs = [(s.name, e) for s, e in sources.select()]

    assert pairs == [("shop", "customers"), ("shop", "orders"), ("web", "events"), ("web", "accounts")]


def test_select_by_source_and_entity(sources: SourcesFile) -> None:
    assert [(s.name, e) for s, e in sources.select("web")] == [("web", "events"), ("web", "accounts")]
    assert [(s.name, e) for s, e in sources.select("shop", "orders")] == [("shop", "orders")]
    assert [(s.name, e) for s, e in sources.select(entity="accounts")] == [("web", "accounts")]


@pytest.mark.parametrize(
    ("source", "entity", "expected"),
    [
        ("nope", None, "no source named 'nope'"),
        ("shop", "nope", "no entity 'nope' in source shop"),
        (None, "nope", "no entity 'nope'"),
        ("web", "orders", "no entity 'orders' in source web"),
    ],
)
def test_select_unknown_names_are_configuration_errors(
    sources: SourcesFile, source: str | None, entity: str | None, expected: str
) -> None:
    with pytest.raises(ConfigurationError, match=expected):
        list(sources.select(source, entity))


def test_unknown_source_error_lists_the_known_ones(sources: SourcesFile) -> None:
    with pytest.raises(ConfigurationError, match="known: shop, web"):
        list(sources.select("nope"))


WAREHOUSE = "postgresql://etl:secret@localhost:5432/warehouse?sslmode=disable"


def test_database_url_comes_from_the_named_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOP_DATABASE_URL", "postgresql://shop@db:5432/shop")
    conn = DatabaseConnection(url_env="SHOP_DATABASE_URL", embedded_database="shop")

    assert (
        resolve_database_url(conn, warehouse_url=WAREHOUSE, embedded=True) == "postgresql://shop@db:5432/shop"
    )


def test_embedded_fallback_uses_the_named_database_on_the_warehouse(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHOP_DATABASE_URL", raising=False)
    conn = DatabaseConnection(url_env="SHOP_DATABASE_URL", embedded_database="shop")

    url = resolve_database_url(conn, warehouse_url=WAREHOUSE, embedded=True)

    assert url == "postgresql://etl:secret@localhost:5432/shop?sslmode=disable"


@pytest.mark.parametrize(
    ("embedded", "embedded_database"),
    [(False, "shop"), (True, None), (False, None)],
)
def test_missing_url_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, embedded: bool, embedded_database: str | None
) -> None:
    monkeypatch.delenv("SHOP_DATABASE_URL", raising=False)
    conn = DatabaseConnection(url_env="SHOP_DATABASE_URL", embedded_database=embedded_database)

    with pytest.raises(ConfigurationError, match="SHOP_DATABASE_URL"):
        resolve_database_url(conn, warehouse_url=WAREHOUSE, embedded=embedded)


def test_empty_variable_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOP_DATABASE_URL", "")
    conn = DatabaseConnection(url_env="SHOP_DATABASE_URL")

    with pytest.raises(ConfigurationError, match="SHOP_DATABASE_URL"):
        resolve_database_url(conn, warehouse_url=WAREHOUSE, embedded=False)


def test_bundled_demo_sources_validate() -> None:
    sources = load_sources(bundled_sources_file())

    names = {s.name: s.kind for s in sources.sources}
    assert names == {"oltp": "database", "web": "file", "crm": "rest", "fx": "rest"}
    pairs = list(sources.select())
    assert len(pairs) == len({(s.name, e) for s, e in pairs})
    oltp = sources.sources[0]
    assert isinstance(oltp, DatabaseSource)
    assert oltp.connection.embedded_database == "oltp"


@pytest.mark.parametrize(
    ("entity", "field"),
    [
        ('{name: orders, table: shop.orders, key: ["customer_id; drop table staging.pulls --"]}', "key.0"),
        (
            '{name: orders, table: shop.orders, key: [order_id], cursor: "updated_at; drop table x --"}',
            "cursor",
        ),
        ('{name: orders, table: shop.orders, key: [order_id], cursor: "1st"}', "cursor"),
        ('{name: orders, table: shop.orders, key: ["a\\"b"]}', "key.0"),
        ('{name: orders, table: shop.orders, key: ["' + "c" * 64 + '"]}', "key.0"),
    ],
)
def test_column_names_are_identifiers_checked_when_the_file_is_loaded(
    tmp_path: Path, entity: str, field: str
) -> None:
    path = write(
        tmp_path,
        f"""
        sources:
          - name: shop
            kind: database
            connection: {{url_env: SHOP_DATABASE_URL}}
            entities:
              - {entity}
        """,
    )

    message = config_error(path)

    assert message.startswith(
        f"sources file {path}: source 'shop' field entities.0.{field} (entity 'orders'):"
    )
    assert "is not an identifier" in message


def test_identifiers_keep_case_digits_underscores_and_dollars(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        sources:
          - name: shop
            kind: database
            connection: {url_env: SHOP_DATABASE_URL}
            entities:
              - {name: orders, table: shop.orders, key: [OrderId, _line2, amount$eur], cursor: UpdatedAt}
          - name: web
            kind: file
            entities:
              - name: events
                files: [{path: "{data_dir}/e.csv", format: csv, rename: {"Event ID": event_id}}]
        """,
    )

    shop, web = load_sources(path).sources
    assert shop.entities[0].key == ["OrderId", "_line2", "amount$eur"]
    assert web.entities[0].files[0].rename == {"Event ID": "event_id"}


@pytest.mark.parametrize(
    ("group", "field"),
    [
        ('{path: "{data_dir}/e.csv", format: csv, rename: {id: "event id"}}', "files.0.rename.id"),
    ],
)
def test_rename_targets_are_identifiers(tmp_path: Path, group: str, field: str) -> None:
    path = write(
        tmp_path,
        f"""
        sources:
          - name: web
            kind: file
            entities: [{{name: events, files: [{group}]}}]
        """,
    )

    message = config_error(path)

    assert f"source 'web' field entities.0.{field} (entity 'events')" in message
    assert "'event id' is not an identifier" in message
