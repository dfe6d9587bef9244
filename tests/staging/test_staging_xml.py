"""XML files: namespaces (Clark names, declared prefixes), attributes, repeated elements, hints."""

from __future__ import annotations

import json
import logging
import textwrap
from pathlib import Path
from typing import Any

import pytest
from extraction_memory import peak_extraction_kib

from etl_shared import ConfigurationError, SourceFatalError
from etl_staging import Batch, FileExtractor
from etl_staging._config import FileEntity, load_sources

ORDERS = """<?xml version="1.0" encoding="UTF-8"?>
<shop:feed xmlns:shop="urn:shop" xmlns:x="urn:extra" xmlns:o="urn:other">
  <shop:order id="o1" x:tier="gold" xml:lang="en">
    <shop:revenue currency="EUR">12.50</shop:revenue>
    <shop:tag>new</shop:tag>
    <shop:tag>sale</shop:tag>
    <x:tag>extra</x:tag>
    <shop:customer id="c1"><shop:name>Ann</shop:name><shop:order>inner</shop:order></shop:customer>
    <note>no namespace</note>
  </shop:order>
  <o:order id="not-a-record"><o:tag>other</o:tag></o:order>
  <shop:order id="o2">
    <shop:tag>single</shop:tag>
  </shop:order>
</shop:feed>
"""


def extractor(tmp_path: Path, text: str, **group: Any) -> FileExtractor:
    (tmp_path / "orders.xml").write_text(text, encoding="utf-8")
    entity = FileEntity.model_validate(
        {
            "name": "orders",
            "keep_payload": False,
            "files": [{"path": "{data_dir}/orders.xml", "format": "xml", **group}],
        }
    )
    return FileExtractor("shop", entity, data_dir=tmp_path, batch_size=100)


def records(ex: FileExtractor) -> list[dict[str, Any]]:
    found = [item for item in ex.extract() if isinstance(item, Batch)]
    return [dict(zip(b.columns, row, strict=True)) for b in found for row in b.rows]


def test_records_path_in_clark_notation_takes_only_that_namespace(tmp_path: Path) -> None:
    found = records(extractor(tmp_path, ORDERS, records_path="{urn:shop}order"))

    assert [r["id"] for r in found] == ["o1", "o2"]  # o:order (another namespace) is not a record
    first = found[0]
    assert first["x:tier"] == "gold"  # a prefixed attribute keeps the document's prefix
    assert first["xml:lang"] == "en"
    assert first["revenue"] == {"@currency": "EUR", "#text": "12.50"}  # a leaf's attribute is kept
    assert first["tag"] == ["new", "sale"]  # repeated: an array in document order
    assert first["x:tag"] == "extra"  # another namespace: its own key, not a third tag
    assert first["customer"] == {"@id": "c1", "name": "Ann", "order": "inner"}
    assert first["note"] == "no namespace"
    assert found[1]["tag"] == "single"  # once: the value itself


def test_records_path_with_a_declared_prefix_and_keys_by_declared_prefixes(tmp_path: Path) -> None:
    ex = extractor(
        tmp_path,
        ORDERS,
        namespaces={"s": "urn:shop", "ext": "urn:extra"},
        records_path="s:order",
        arrays=["tag"],
    )
    found = records(ex)

    assert [r["id"] for r in found] == ["o1", "o2"]
    # the declared prefix names the namespace, whatever the document calls it
    assert found[0]["ext:tier"] == "gold"
    assert found[0]["ext:tag"] == "extra"
    assert found[0]["tag"] == ["new", "sale"]
    assert found[1]["tag"] == ["single"]  # listed in arrays: an array even when once


def test_a_bare_name_matches_elements_in_no_namespace_only(tmp_path: Path) -> None:
    document = """<feed xmlns:y="urn:y">
      <order id="1"><amount>5</amount></order>
      <y:order id="y1"><amount>6</amount></y:order>
      <order id="2"/>
    </feed>"""

    found = records(extractor(tmp_path, document, records_path="order"))

    assert [r["id"] for r in found] == ["1", "2"]


def test_an_element_of_a_default_namespace_without_prefix_is_a_clark_key(tmp_path: Path) -> None:
    document = '<feed><order id="1"><geo xmlns="urn:geo">DE</geo><geo>Berlin</geo></order></feed>'

    found = records(extractor(tmp_path, document, records_path="order"))

    assert found == [{"id": "1", "{urn:geo}geo": "DE", "geo": "Berlin"}]


def test_an_attribute_named_like_a_child_element_is_marked(tmp_path: Path) -> None:
    document = '<feed><order id="1" status="open"><id>A-1</id></order></feed>'

    found = records(extractor(tmp_path, document, records_path="order"))

    assert found == [{"@id": "1", "status": "open", "id": "A-1"}]


def test_mixed_content_keeps_the_element_text(tmp_path: Path) -> None:
    document = "<feed><order><note>call <b>before</b> noon</note><empty/></order></feed>"

    found = records(extractor(tmp_path, document, records_path="order"))

    assert found == [{"note": {"b": "before", "#text": "call  noon"}, "empty": None}]


def hint(caplog: pytest.LogCaptureFixture) -> str:
    """The WARNING that says what records_path to write."""
    (found,) = [r.getMessage() for r in caplog.records if "matched no element" in r.getMessage()]
    return found


def test_a_path_that_matches_nothing_says_what_to_write(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    document = '<feed xmlns="urn:x"><order id="1"/><order id="2"/></feed>'

    with caplog.at_level(logging.WARNING, logger="etl_staging"):
        found = records(extractor(tmp_path, document, records_path="order"))

    assert found == []
    # the hint, and the file's empty-file warning (on_empty: warn)
    (warning,) = [r for r in caplog.records if "matched no element" in r.getMessage()]
    message = warning.getMessage()
    assert any("holds no record" in r.getMessage() for r in caplog.records)
    assert str(tmp_path / "orders.xml") in message
    assert "records_path 'order' matched no element" in message
    assert (
        "found {urn:x}order (2 elements): set records_path: '{urn:x}order' or declare namespaces" in message
    )
    assert "{ns: 'urn:x'} and set records_path: 'ns:order'" in message


def test_a_path_that_matches_nothing_suggests_the_documents_prefix(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="etl_staging"):
        assert records(extractor(tmp_path, ORDERS, records_path="order")) == []

    message = hint(caplog)
    assert "set records_path: '{urn:shop}order'" in message
    assert "declare namespaces: {shop: 'urn:shop'} and set records_path: 'shop:order'" in message
    assert "{urn:other}order (1 element)" in message


def test_a_clark_path_of_a_namespace_not_in_the_file_hints_at_the_namesake(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="etl_staging"):
        assert records(extractor(tmp_path, "<feed><order/></feed>", records_path="{urn:x}order")) == []

    assert "found order (1 element, in no namespace): set records_path: 'order'" in hint(caplog)


def test_a_records_path_whose_prefix_is_not_declared_is_a_configuration_error(tmp_path: Path) -> None:
    path = tmp_path / "sources.yml"
    path.write_text(
        textwrap.dedent(
            """\
            sources:
              - name: shop
                kind: file
                entities:
                  - name: orders
                    files: [{path: x.xml, format: xml, records_path: "s:order", namespaces: {t: "urn:t"}}]
            """
        )
    )

    with pytest.raises(ConfigurationError) as info:
        load_sources(path)

    message = str(info.value)
    assert "'s:order'" in message
    assert "prefix 's' is not declared" in message


def test_namespaces_are_an_xml_option(tmp_path: Path) -> None:
    path = tmp_path / "sources.yml"
    path.write_text(
        "sources:\n  - {name: shop, kind: file, entities: [{name: orders, files: [{path: x.csv, format: csv,"
        " namespaces: {s: 'urn:s'}}]}]}\n"
    )

    with pytest.raises(ConfigurationError, match="options of format xml"):
        load_sources(path)


def test_an_unsafe_document_is_still_refused_with_namespaces(tmp_path: Path) -> None:
    document = (
        '<?xml version="1.0"?>\n<!DOCTYPE feed [<!ENTITY boom "boom">]>\n'
        '<feed xmlns="urn:x"><order>&boom;</order></feed>'
    )
    with pytest.raises(SourceFatalError, match="unsafe XML"):
        records(extractor(tmp_path, document, records_path="{urn:x}order"))


def _write_orders(path: Path, count: int) -> None:
    with path.open("w", encoding="utf-8") as handle:
        handle.write('<feed xmlns="urn:x" xmlns:m="urn:m">\n')
        for i in range(count):
            handle.write(
                f'<order id="{i}" m:channel="web"><amount currency="EUR">{i}.50</amount>'
                f"<tag>a</tag><tag>b</tag><note>{'x' * 200}</note></order>\n"
            )
        handle.write("</feed>\n")


def test_memory_stays_flat_when_the_file_doubles(tmp_path: Path) -> None:
    small, large = tmp_path / "small.xml", tmp_path / "large.xml"
    _write_orders(small, 60_000)
    _write_orders(large, 120_000)  # ~36 MB: a leak of the records read would show as many MB more

    (small_count, small_rss), (large_count, large_rss) = (
        peak_extraction_kib(tmp_path, {"path": str(small), "format": "xml", "records_path": "{urn:x}order"}),
        peak_extraction_kib(tmp_path, {"path": str(large), "format": "xml", "records_path": "{urn:x}order"}),
    )

    assert (small_count, large_count) == (60_000, 120_000)
    assert large_rss < small_rss * 1.3, json.dumps({"small_kib": small_rss, "large_kib": large_rss})
