"""REST extraction with ``requests``: configuration models, authenticators, paginators, the client
(timeouts, retries, rate budget, redaction) and :class:`RestExtractor`; ``kind: rest_async`` fan-out
entities fetched concurrently with aiohttp by :class:`AsyncRestExtractor`.

``_config`` imports the models from here while ``_extractor`` needs ``_extract`` (which imports
``_config``), so the extractors are loaded on first use rather than with the package.
"""

from typing import TYPE_CHECKING, Any

from ._async_models import AsyncRestEntity, DatesFanOut, FanOut, PagesFanOut, ValuesFanOut
from ._auth import (
    ApiKeyAuthenticator,
    Authenticator,
    BasicAuthenticator,
    BearerAuthenticator,
    OAuth2ClientCredentialsAuthenticator,
    build_authenticator,
)
from ._client import (
    RETRY_STATUSES,
    Decision,
    Page,
    PauseGate,
    RateBudget,
    Redactor,
    RestClient,
    RestCounters,
    RetryPolicy,
    announced_pause,
    decide,
    retry_after_seconds,
)
from ._duplicates import DuplicateCounter
from ._models import (
    ApiKeyAuth,
    BasicAuth,
    BearerAuth,
    CursorBodyPagination,
    CursorHeaderPagination,
    Incremental,
    LinkHeaderPagination,
    NextUrlBodyPagination,
    NoAuth,
    NoPagination,
    OAuth2ClientCredentialsAuth,
    OffsetPagination,
    PageNumberPagination,
    Pagination,
    PostBodyPagination,
    RateLimit,
    RestAuth,
    RestConnection,
    RestEntity,
    resolve_secret,
)
from ._paginators import (
    BasePaginator,
    HeaderCursorPaginator,
    HeaderLinkPaginator,
    JSONResponseCursorPaginator,
    JSONResponseNextUrlPaginator,
    OffsetPaginator,
    PageNumberPaginator,
    SinglePagePaginator,
    make_paginator,
)

if TYPE_CHECKING:
    from ._async_extractor import AsyncRestExtractor
    from ._extractor import RestExtractor, incremental_start

_LAZY = {
    "RestExtractor": "_extractor",
    "incremental_start": "_extractor",
    "AsyncRestExtractor": "_async_extractor",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "RETRY_STATUSES",
    "ApiKeyAuth",
    "ApiKeyAuthenticator",
    "AsyncRestEntity",
    "AsyncRestExtractor",
    "Authenticator",
    "BasePaginator",
    "BasicAuth",
    "BasicAuthenticator",
    "BearerAuth",
    "BearerAuthenticator",
    "CursorBodyPagination",
    "CursorHeaderPagination",
    "DatesFanOut",
    "Decision",
    "DuplicateCounter",
    "FanOut",
    "HeaderCursorPaginator",
    "HeaderLinkPaginator",
    "Incremental",
    "JSONResponseCursorPaginator",
    "JSONResponseNextUrlPaginator",
    "LinkHeaderPagination",
    "NextUrlBodyPagination",
    "NoAuth",
    "NoPagination",
    "OAuth2ClientCredentialsAuth",
    "OAuth2ClientCredentialsAuthenticator",
    "OffsetPagination",
    "OffsetPaginator",
    "Page",
    "PageNumberPagination",
    "PageNumberPaginator",
    "PagesFanOut",
    "Pagination",
    "PauseGate",
    "PostBodyPagination",
    "RateBudget",
    "RateLimit",
    "Redactor",
    "RestAuth",
    "RestClient",
    "RestConnection",
    "RestCounters",
    "RestEntity",
    "RestExtractor",
    "RetryPolicy",
    "SinglePagePaginator",
    "ValuesFanOut",
    "announced_pause",
    "build_authenticator",
    "decide",
    "incremental_start",
    "make_paginator",
    "resolve_secret",
    "retry_after_seconds",
]
