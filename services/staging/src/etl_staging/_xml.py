"""XML files: one record per element named by ``records_path``, streamed with defusedxml's iterparse.

The record element is named as ElementTree names elements: ``name`` (an element in no namespace),
``{uri}name`` (Clark notation) or ``prefix:name`` with the prefix declared in the file group's
``namespaces``. Only elements of exactly that name are records, outermost first (an element of the
same name inside a record is part of it): an element of another namespace is never taken for one.

A record becomes a dict (docs/data-model.md, "XML"):

- its attributes are columns named after the attribute; a namespaced attribute keeps its namespace
  as ``prefix:name`` (see :class:`_Names` for which prefix); an attribute named like a child element
  of the same record is ``@name``;
- each child element is a column: an element of the record's namespace or of none by its local name,
  an element of another namespace as ``prefix:name``;
- a leaf element without attributes is its text; any other element an object with its attributes as
  ``@name``, its child elements by the same rules, and its own text (if not only whitespace) as
  ``#text``;
- an element name that occurs more than once under the same parent is a JSON array of the values in
  document order; once, it is the value itself, unless its key is listed in ``arrays``.

Memory stays flat: each record's elements are cleared and detached once the record is built, and so
are the elements between records. Entity expansion and external references are refused (defusedxml).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from defusedxml import DefusedXmlException
from defusedxml import ElementTree as SafeElementTree

from etl_shared import SourceFatalError

if TYPE_CHECKING:
    from xml.etree.ElementTree import Element

    from ._config import FileGroup
    from ._extract import SourceFile

_log = logging.getLogger(__name__)

#: the namespace of ``xml:lang``, ``xml:space``: bound to ``xml`` without a declaration
XML_NAMESPACE = "http://www.w3.org/XML/1998/namespace"
TEXT_KEY = "#text"
ATTRIBUTE_MARK = "@"
_NCNAME = r"[A-Za-z_][\w.-]*"
_CLARK = re.compile(rf"\{{([^{{}}]+)\}}({_NCNAME})")
_PREFIXED = re.compile(rf"({_NCNAME}):({_NCNAME})")
_LOCAL = re.compile(_NCNAME)


@dataclass(frozen=True)
class QName:
    """An element or attribute name: its namespace URI (None: no namespace) and local name."""

    namespace: str | None
    local: str

    @classmethod
    def of(cls, tag: str) -> QName:
        """The name of an ElementTree tag or attribute key (``{uri}local`` or ``local``)."""
        if tag[:1] == "{":
            uri, _, local = tag[1:].partition("}")
            return cls(uri, local)
        return cls(None, tag)

    @property
    def clark(self) -> str:
        return self.local if self.namespace is None else f"{{{self.namespace}}}{self.local}"


def check_namespaces(namespaces: Mapping[str, str]) -> None:
    """ValueError unless every prefix is an XML name and every URI is given."""
    for prefix, uri in namespaces.items():
        if not _LOCAL.fullmatch(prefix) or prefix.lower().startswith("xml"):
            raise ValueError(f"namespaces: {prefix!r} is not a usable namespace prefix")
        if not uri.strip():
            raise ValueError(f"namespaces: prefix {prefix!r} has no namespace URI")


def records_element(records_path: str, namespaces: Mapping[str, str]) -> QName:
    """The element an XML ``records_path`` names; ValueError says what to write instead."""
    if clark := _CLARK.fullmatch(records_path):
        return QName(clark.group(1), clark.group(2))
    if prefixed := _PREFIXED.fullmatch(records_path):
        prefix, local = prefixed.groups()
        if prefix not in namespaces:
            raise ValueError(
                f"records_path {records_path!r}: the prefix {prefix!r} is not declared; declare it"
                f" (namespaces: {{{prefix}: <uri>}}) or write the name as '{{<uri>}}{local}'"
            )
        return QName(namespaces[prefix], local)
    if _LOCAL.fullmatch(records_path):
        return QName(None, records_path)
    raise ValueError(
        f"records_path {records_path!r} is not an element name: write 'name' (no namespace),"
        " '{uri}name' or 'prefix:name' (a prefix declared in namespaces)"
    )


class _Names:
    """The keys of a record's elements and attributes, fixed per tag for the whole file.

    A namespace is written with the prefix the file group declares for it in ``namespaces`` (stable
    whatever the document calls it), else the first prefix the document binds to it, else in Clark
    notation ``{uri}name`` (a namespace the document only uses as its default)."""

    def __init__(self, home: str | None, declared: Mapping[str, str]) -> None:
        #: the record element's namespace: its elements are named by their local name
        self.home = home
        self.prefixes: dict[str, str] = {XML_NAMESPACE: "xml"}
        for prefix, uri in declared.items():
            self.prefixes.setdefault(uri, prefix)
        self._document: dict[str, str] = {}
        self._elements: dict[str, str] = {}
        self._attributes: dict[str, str] = {}

    def bound(self, prefix: str, uri: str) -> None:
        """The document binds ``prefix`` to ``uri`` (iterparse's start-ns event)."""
        if prefix:
            self._document.setdefault(uri, prefix)

    def document_prefix(self, uri: str) -> str | None:
        return self.prefixes.get(uri) or self._document.get(uri)

    def _qualified(self, name: QName) -> str:
        assert name.namespace is not None
        prefix = self.document_prefix(name.namespace)
        return f"{prefix}:{name.local}" if prefix else name.clark

    def element(self, tag: str) -> str:
        key = self._elements.get(tag)
        if key is None:
            name = QName.of(tag)
            key = name.local if name.namespace in (None, self.home) else self._qualified(name)
            self._elements[tag] = key
        return key

    def attribute(self, key: str) -> str:
        name = self._attributes.get(key)
        if name is None:
            qname = QName.of(key)
            name = qname.local if qname.namespace is None else self._qualified(qname)
            self._attributes[key] = name
        return name


class _Builder:
    """Turns a record element into its dict (the rules in the module's docstring)."""

    def __init__(self, names: _Names, arrays: frozenset[str]) -> None:
        self.names = names
        self.arrays = arrays

    def record(self, element: Element) -> dict[str, Any]:
        children = self._children(element)
        record: dict[str, Any] = {}
        for key, value in element.attrib.items():
            name = self.names.attribute(key)
            record[ATTRIBUTE_MARK + name if name in children else name] = value
        record.update(children)
        text = _own_text(element)
        if text is not None:
            record[TEXT_KEY] = text
        return record

    def _value(self, element: Element) -> Any:
        if len(element) == 0 and not element.attrib:
            return element.text
        value: dict[str, Any] = {
            ATTRIBUTE_MARK + self.names.attribute(key): item for key, item in element.attrib.items()
        }
        value.update(self._children(element))
        text = element.text if len(element) == 0 else _own_text(element)
        if text is not None:
            value[TEXT_KEY] = text
        return value

    def _children(self, element: Element) -> dict[str, Any]:
        children: dict[str, Any] = {}
        repeated: set[str] = set()
        for child in element:
            key = self.names.element(child.tag)
            value = self._value(child)
            if key in repeated:
                children[key].append(value)
            elif key in children:
                children[key] = [children[key], value]
                repeated.add(key)
            elif key in self.arrays:
                children[key] = [value]
                repeated.add(key)
            else:
                children[key] = value
        return children


def _own_text(element: Element) -> str | None:
    """The text directly inside an element with children (mixed content), None when only whitespace."""
    pieces = [element.text or ""] + [child.tail or "" for child in element]
    text = "".join(pieces)
    return text if text.strip() else None


def xml_records(
    source_file: SourceFile, group: FileGroup, where: str
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(record number from 1, record) of each element named ``records_path``, in document order."""
    if not group.records_path:
        raise SourceFatalError(f"{where}: XML needs 'records_path' (the element of one record)")
    try:
        target = records_element(group.records_path, group.namespaces)
    except ValueError as exc:
        raise SourceFatalError(f"{where}: {exc}") from None
    tag = target.clark
    names = _Names(target.namespace, group.namespaces)
    builder = _Builder(names, frozenset(group.arrays))
    count = 0
    #: elements with the record's local name in another namespace (never records): tag -> count
    others: dict[str, int] = {}
    open_elements: list[Element] = []
    record: Element | None = None
    with source_file.open() as handle:
        try:
            for event, item in SafeElementTree.iterparse(handle, events=("start-ns", "start", "end")):
                if event == "start-ns":
                    names.bound(*item)
                    continue
                if event == "start":
                    if record is None and item.tag == tag:
                        record = item
                    open_elements.append(item)
                    continue
                open_elements.pop()
                if item is record:
                    count += 1
                    yield count, builder.record(item)
                    record = None
                elif record is not None:
                    continue  # part of the record being read: kept until the record ends
                elif item.tag != tag and item.tag.rpartition("}")[2] == target.local:
                    others[item.tag] = others.get(item.tag, 0) + 1
                # done with it: detach it, so that nothing read so far stays in memory
                item.clear()
                if open_elements:
                    open_elements[-1].remove(item)
        except SafeElementTree.ParseError as exc:
            raise SourceFatalError(f"{where}: malformed XML after record {count}: {exc}") from None
        except DefusedXmlException as exc:
            raise SourceFatalError(f"{where}: refused unsafe XML ({type(exc).__name__}: {exc})") from None
    _report_others(where, group.records_path, target, names, count, others)


def _report_others(
    where: str, records_path: str, target: QName, names: _Names, count: int, others: dict[str, int]
) -> None:
    """Say what ``records_path`` should have been when it matched nothing but a namesake did."""
    if count == 0:
        if not others:
            _log.warning(
                "%s: records_path %r matched no element: no records in this file", where, records_path
            )
            return
        found = "; ".join(_suggestion(QName.of(tag), names, n) for tag, n in others.items())
        _log.warning("%s: records_path %r matched no element; found %s", where, records_path, found)
    elif others:
        skipped = ", ".join(f"{n} {tag}" for tag, n in others.items())
        _log.info(
            "%s: %d records %s; skipped elements of another namespace with the same local name: %s",
            where,
            count,
            target.clark,
            skipped,
        )


def _suggestion(name: QName, names: _Names, n: int) -> str:
    elements = "1 element" if n == 1 else f"{n} elements"
    if name.namespace is None:
        return f"{name.local} ({elements}, in no namespace): set records_path: '{name.local}'"
    # the document's own prefix for the namespace, else a made-up one (a default namespace has none)
    prefix = names.document_prefix(name.namespace) or "ns"
    return (
        f"{name.clark} ({elements}): set records_path: '{name.clark}' or declare namespaces:"
        f" {{{prefix}: '{name.namespace}'}} and set records_path: '{prefix}:{name.local}'"
    )
