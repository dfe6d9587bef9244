"""REST extraction with ``requests``: configuration models, authenticators, paginators, the client
(timeouts, retries, rate budget, redaction) and :class:`RestExtractor`.

``_config`` imports the models from here while ``_extractor`` needs ``_extract`` (which imports
``_config``), so the extractor is loaded on first use rather than with the package.
"""

from typing import TYPE_CHECKING, Any

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
    RateBudget,
    Redactor,
    RestClient,
    RestCounters,
    RetryPolicy,
    decide,
    retry_after_seconds,
)
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
    from ._extractor import RestExtractor, incremental_start

_LAZY = {"RestExtractor", "incremental_start"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from . import _extractor

        return getattr(_extractor, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "RETRY_STATUSES",
    "ApiKeyAuth",
    "ApiKeyAuthenticator",
    "Authenticator",
    "BasePaginator",
    "BasicAuth",
    "BasicAuthenticator",
    "BearerAuth",
    "BearerAuthenticator",
    "CursorBodyPagination",
    "CursorHeaderPagination",
    "Decision",
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
    "Pagination",
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
    "build_authenticator",
    "decide",
    "incremental_start",
    "make_paginator",
    "resolve_secret",
    "retry_after_seconds",
]
