"""Pagination as a protocol (after dlt's paginators): the client loop is written once.

The client calls ``init_request`` once, then after every page ``update_state(response, records)`` and,
while ``has_next_page``, ``update_request(request)``. The base class applies the rules common to all
(empty page, page limit, identical consecutive pages); concrete paginators only find the next page and
refuse a cursor, page or URL they have already seen.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from typing import Any, Literal
from urllib.parse import urljoin, urlsplit

import orjson
import requests

from etl_shared import SourceFatalError

from .._json import JsonError
from .._json import loads as json_loads
from ._models import (
    CursorBodyPagination,
    CursorHeaderPagination,
    LinkHeaderPagination,
    NextUrlBodyPagination,
    NoPagination,
    OffsetPagination,
    PageNumberPagination,
    Pagination,
    PostBodyPagination,
)
from ._paths import MISSING, assign, lookup

Target = Literal["query", "body"]


class BasePaginator(ABC):
    def __init__(self, *, max_pages: int = 100_000, stop_on_empty_page: bool = True) -> None:
        self.max_pages = max_pages
        self.stop_on_empty_page = stop_on_empty_page
        self.pages = 0
        self._has_next_page = True
        self._seen: set[str] = set()
        self._last_digest: bytes | None = None

    @property
    def has_next_page(self) -> bool:
        return self._has_next_page

    def init_request(self, request: requests.Request) -> None:  # noqa: B027 - optional hook
        """Set the parameters of the first page."""

    def update_state(self, response: requests.Response, records: list[Any], document: Any = MISSING) -> None:
        """Learn from a page (its response, its records and, when already parsed, its JSON body)."""
        self.pages += 1
        if document is MISSING:
            document = _json_or_none(response)
        if not records and self.stop_on_empty_page:
            self._has_next_page = False
            return
        if records:
            digest = hashlib.sha256(response.content).digest()
            if digest == self._last_digest:
                raise SourceFatalError(
                    f"pagination loop detected at page {self.pages}: the same body as the previous page"
                )
            self._last_digest = digest
        self._advance(response, records, document)
        if self._has_next_page and self.pages >= self.max_pages:
            raise SourceFatalError(
                f"more than max_pages={self.max_pages} pages; raise the limit if the source is that large"
            )

    @abstractmethod
    def _advance(self, response: requests.Response, records: list[Any], document: Any) -> None:
        """Find the next page or set ``_has_next_page`` to False."""

    @abstractmethod
    def update_request(self, request: requests.Request) -> None:
        """Point the request at the next page."""

    def _remember(self, what: str, key: Any) -> None:
        text = (
            key
            if isinstance(key, str)
            else orjson.dumps(key, option=orjson.OPT_SORT_KEYS, default=str).decode()
        )
        if text in self._seen:
            raise SourceFatalError(f"pagination loop detected at {what} {text!r} (page {self.pages})")
        self._seen.add(text)

    def _stop(self) -> None:
        self._has_next_page = False


def _json_or_none(response: requests.Response) -> Any:
    try:
        return json_loads(response.content) if response.content else None
    except JsonError:
        return None


def _set_param(request: requests.Request, target: Target, name: str, value: Any) -> None:
    if target == "query":
        request.params = {**(request.params or {}), name: value}
    else:
        request.json = assign(request.json or {}, name, value)


def _prepared_url(request: requests.Request) -> str:
    prepared = requests.PreparedRequest()
    prepared.prepare_url(request.url, request.params)
    return str(prepared.url)


class SinglePagePaginator(BasePaginator):
    def _advance(self, response: requests.Response, records: list[Any], document: Any) -> None:
        self._stop()

    def update_request(self, request: requests.Request) -> None:
        raise AssertionError("a single page has no next page")


class OffsetPaginator(BasePaginator):
    """``offset``/``limit`` (in the query or, for search APIs, in the JSON body); stops on an empty
    page or when the offset reaches the total. The offset advances by the records received, so an
    API that caps the limit below the one asked loses nothing."""

    def __init__(
        self,
        *,
        offset_param: str,
        limit_param: str | None,
        limit: int,
        start: int = 0,
        total_path: str | None = None,
        target: Target = "query",
        **base: Any,
    ) -> None:
        super().__init__(**base)
        self.offset_param = offset_param
        self.limit_param = limit_param
        self.limit = limit
        self.offset = start
        self.total_path = total_path
        self.target = target

    def init_request(self, request: requests.Request) -> None:
        self._remember("offset", self.offset)
        self.update_request(request)

    def _advance(self, response: requests.Response, records: list[Any], document: Any) -> None:
        self.offset += len(records)
        if self.total_path is not None:
            total = lookup(document, self.total_path)
            if isinstance(total, str) and total.isdigit():
                total = int(total)
            if not isinstance(total, int):
                raise SourceFatalError(f"no integer total at {self.total_path!r} in the response")
            if self.offset >= total:
                self._stop()
                return
        self._remember("offset", self.offset)

    def update_request(self, request: requests.Request) -> None:
        _set_param(request, self.target, self.offset_param, self.offset)
        if self.limit_param:
            _set_param(request, self.target, self.limit_param, self.limit)


class PageNumberPaginator(BasePaginator):
    def __init__(
        self,
        *,
        page_param: str,
        start_page: int = 1,
        size_param: str | None = None,
        size: int | None = None,
        total_pages_path: str | None = None,
        **base: Any,
    ) -> None:
        super().__init__(**base)
        self.page_param = page_param
        self.start_page = start_page
        self.page = start_page
        self.size_param = size_param
        self.size = size
        self.total_pages_path = total_pages_path

    def init_request(self, request: requests.Request) -> None:
        self.update_request(request)

    def _advance(self, response: requests.Response, records: list[Any], document: Any) -> None:
        if self.total_pages_path is not None:
            total = lookup(document, self.total_pages_path)
            if isinstance(total, str) and total.isdigit():
                total = int(total)
            if not isinstance(total, int):
                raise SourceFatalError(f"no integer page count at {self.total_pages_path!r} in the response")
            if self.page - self.start_page + 1 >= total:
                self._stop()
                return
        self.page += 1

    def update_request(self, request: requests.Request) -> None:
        _set_param(request, "query", self.page_param, self.page)
        if self.size_param and self.size:
            _set_param(request, "query", self.size_param, self.size)


class _CursorPaginator(BasePaginator):
    def __init__(self, *, cursor_param: str, target: Target = "query", **base: Any) -> None:
        super().__init__(**base)
        self.cursor_param = cursor_param
        self.target = target
        self.cursor: Any = None

    @abstractmethod
    def _next_cursor(self, response: requests.Response, document: Any) -> Any: ...

    def _advance(self, response: requests.Response, records: list[Any], document: Any) -> None:
        cursor = self._next_cursor(response, document)
        if cursor is MISSING or cursor is None or cursor in ("", [], {}):
            self._stop()
            return
        self._remember("cursor", cursor)
        self.cursor = cursor

    def update_request(self, request: requests.Request) -> None:
        _set_param(request, self.target, self.cursor_param, self.cursor)


class JSONResponseCursorPaginator(_CursorPaginator):
    """The next cursor is in the JSON body (sent back as a query parameter, or a body field of a POST)."""

    def __init__(self, *, cursor_path: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cursor_path = cursor_path

    def _next_cursor(self, response: requests.Response, document: Any) -> Any:
        return lookup(document, self.cursor_path)


class HeaderCursorPaginator(_CursorPaginator):
    def __init__(self, *, header: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.header = header

    def _next_cursor(self, response: requests.Response, document: Any) -> Any:
        return response.headers.get(self.header)


class _NextUrlPaginator(BasePaginator):
    """The next page is a whole URL (relative ones are resolved against the page's URL). A URL on
    another host is refused: the credentials would go with it."""

    def __init__(self, **base: Any) -> None:
        super().__init__(**base)
        self.next_url: str | None = None

    @abstractmethod
    def _next_link(self, response: requests.Response, document: Any) -> Any: ...

    def init_request(self, request: requests.Request) -> None:
        self._remember("URL", _prepared_url(request))

    def _advance(self, response: requests.Response, records: list[Any], document: Any) -> None:
        link = self._next_link(response, document)
        if not isinstance(link, str) or not link.strip():
            self._stop()
            return
        url = urljoin(response.url, link.strip())
        here, there = urlsplit(response.url), urlsplit(url)
        if (here.scheme, here.netloc) != (there.scheme, there.netloc):
            raise SourceFatalError(
                f"the next page is on another host ({there.scheme}://{there.hostname});"
                " refusing to send the credentials there"
            )
        self._remember("URL", url)
        self.next_url = url

    def update_request(self, request: requests.Request) -> None:
        assert self.next_url is not None
        request.url = self.next_url
        request.params = {}


class HeaderLinkPaginator(_NextUrlPaginator):
    """RFC 8288 ``Link: <...>; rel="next"``."""

    def _next_link(self, response: requests.Response, document: Any) -> Any:
        return response.links.get("next", {}).get("url")


class JSONResponseNextUrlPaginator(_NextUrlPaginator):
    def __init__(self, *, next_path: str, **base: Any) -> None:
        super().__init__(**base)
        self.next_path = next_path

    def _next_link(self, response: requests.Response, document: Any) -> Any:
        return lookup(document, self.next_path)


def make_paginator(config: Pagination) -> BasePaginator:
    base = {"max_pages": config.max_pages, "stop_on_empty_page": config.stop_on_empty_page}
    if isinstance(config, NoPagination):
        return SinglePagePaginator(**base)
    if isinstance(config, OffsetPagination):
        return OffsetPaginator(
            offset_param=config.offset_param,
            limit_param=config.limit_param,
            limit=config.limit,
            start=config.start,
            total_path=config.total_path,
            **base,
        )
    if isinstance(config, PageNumberPagination):
        return PageNumberPaginator(
            page_param=config.page_param,
            start_page=config.start_page,
            size_param=config.size_param,
            size=config.size,
            total_pages_path=config.total_pages_path,
            **base,
        )
    if isinstance(config, CursorBodyPagination):
        return JSONResponseCursorPaginator(
            cursor_path=config.cursor_path, cursor_param=config.cursor_param, **base
        )
    if isinstance(config, CursorHeaderPagination):
        return HeaderCursorPaginator(header=config.header, cursor_param=config.cursor_param, **base)
    if isinstance(config, LinkHeaderPagination):
        return HeaderLinkPaginator(**base)
    if isinstance(config, NextUrlBodyPagination):
        return JSONResponseNextUrlPaginator(next_path=config.next_path, **base)
    assert isinstance(config, PostBodyPagination)
    if config.cursor_path is not None:
        assert config.body_cursor_field is not None
        return JSONResponseCursorPaginator(
            cursor_path=config.cursor_path, cursor_param=config.body_cursor_field, target="body", **base
        )
    assert config.body_offset_field is not None and config.limit is not None
    return OffsetPaginator(
        offset_param=config.body_offset_field,
        limit_param=config.body_limit_field,
        limit=config.limit,
        total_path=config.total_path,
        target="body",
        **base,
    )
