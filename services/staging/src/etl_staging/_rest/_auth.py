"""Authenticators: ``requests`` auth hooks built from a :data:`RestAuth` configuration.

Each one knows its secret values (so the client can scrub them from every message) and what a 401
means (:meth:`Authenticator.after_401`): only an OAuth2 token can be refreshed, and it is refreshed
once for all the requests that hold it, however many of them meet the 401.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import requests
from requests.auth import AuthBase, HTTPBasicAuth

from etl_shared import SourceFatalError

from ._models import (
    ApiKeyAuth,
    BasicAuth,
    BearerAuth,
    NoAuth,
    OAuth2ClientCredentialsAuth,
    RestAuth,
    resolve_secret,
)

_log = logging.getLogger(__name__)

# Sends a request through the client's retry policy (token requests are classified like any other).
TokenTransport = Callable[[requests.Request], Any]

#: What a 401 means (:meth:`Authenticator.after_401`).
Verdict = Literal["refresh", "resend", "refused", "fatal"]


class Authenticator(AuthBase):
    """Applies credentials to a prepared request. The base class sends none."""

    #: Query parameters holding a secret (redacted from URLs in logs and errors).
    secret_params: frozenset[str] = frozenset()
    #: Headers holding a secret other than Authorization (dropped on a redirect to another host).
    credential_headers: frozenset[str] = frozenset()

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        return request

    def secret_values(self) -> list[str]:
        """Every secret this authenticator holds or has fetched, for literal scrubbing."""
        return []

    def bind(self, transport: TokenTransport) -> None:
        """Receive the client's request function (authenticators that fetch tokens need it)."""

    def after_401(self, request: requests.PreparedRequest, *, may_refresh: bool = True) -> Verdict:
        """What a 401 to ``request`` means, for the request to act on:

        * ``"refresh"``: its token is dropped; the next attempt of any request fetches a new one;
        * ``"resend"``: another request replaced the token since this one was sent (or is fetching a new
          one): send it again with the current token, which is no credential failure;
        * ``"refused"``: the token was refused right after a refresh (or ``may_refresh`` is False, the
          request having had one already): the credentials are really refused;
        * ``"fatal"``: there is nothing to refresh (a fixed key, token or password).
        """
        return "fatal"

    def accepted(self, request: requests.PreparedRequest) -> None:
        """The API accepted the credentials ``request`` carried (a 2xx)."""


class ApiKeyAuthenticator(Authenticator):
    def __init__(self, location: str, name: str, value: str) -> None:
        self.location = location
        self.name = name
        self._value = value
        if location == "query":
            self.secret_params = frozenset({name})
        else:
            self.credential_headers = frozenset({name})

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if self.location == "header":
            request.headers[self.name] = self._value
            return request
        parts = urlsplit(str(request.url))
        query = parse_qsl(parts.query, keep_blank_values=True)
        if any(name == self.name for name, _ in query):
            # A next-page URL may echo the key: send it once, with the configured value.
            kept = [(name, value) for name, value in query if name != self.name]
            request.url = urlunsplit(parts._replace(query=urlencode(kept)))
        request.prepare_url(request.url, {self.name: self._value})
        return request

    def secret_values(self) -> list[str]:
        return [self._value]


class BearerAuthenticator(Authenticator):
    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def secret_values(self) -> list[str]:
        return [self._token]


class BasicAuthenticator(Authenticator):
    def __init__(self, username: str, password: str) -> None:
        self._basic = HTTPBasicAuth(username, password)
        self._password = password

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        return self._basic(request)

    def secret_values(self) -> list[str]:
        encoded = base64.b64encode(f"{self._basic.username}:{self._password}".encode()).decode("ascii")
        return [self._password, encoded]


class OAuth2ClientCredentialsAuthenticator(Authenticator):
    """Client credentials grant: one token cached until ``refresh_margin_s`` before it expires, shared
    by every request (threads and coroutines alike).

    Refreshes are single-flight: one token request at a time, the others wait for its token. A 401 drops
    the token only when it is the one the request carried (:meth:`after_401`); a request that carried an
    older one is simply sent again. A token fetched because of a 401 and refused before the API accepted
    it once means the credentials are refused, not that the token expired.
    """

    secret_params = frozenset({"access_token", "client_secret"})

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        *,
        scope: str | None = None,
        refresh_margin_s: float = 60,
        client_auth: str = "body",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.token_url = token_url
        self.client_id = client_id
        self._client_secret = client_secret
        self.scope = scope
        self.refresh_margin_s = refresh_margin_s
        self.client_auth = client_auth
        self._clock = clock
        self._transport: TokenTransport | None = None
        self._token: str | None = None
        self._refresh_at = 0.0
        self._tokens_seen: list[str] = []
        # _fetching: one token request at a time (held while it runs); _state: the token and what is
        # known of it, held only briefly (an event loop thread takes it too)
        self._fetching = threading.Lock()
        self._state = threading.Lock()
        self._refresh_for_401 = False  # the next token is fetched because a 401 dropped the last one
        self._from_401 = False  # the current token was fetched because of a 401
        self._accepted = False  # the API accepted the current token at least once
        self.token_requests = 0

    def bind(self, transport: TokenTransport) -> None:
        self._transport = transport

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._current_token()}"
        return request

    def secret_values(self) -> list[str]:
        return [self._client_secret, *self._tokens_seen]

    def after_401(self, request: requests.PreparedRequest, *, may_refresh: bool = True) -> Verdict:
        sent = _bearer_token(request)
        with self._state:
            if self._token is None or sent != self._token:
                return "resend"  # replaced meanwhile, or being replaced: the next attempt gets the new one
            if (self._from_401 and not self._accepted) or not may_refresh:
                return "refused"
            self._token = None
            self._refresh_for_401 = True
            return "refresh"

    def accepted(self, request: requests.PreparedRequest) -> None:
        sent = _bearer_token(request)
        with self._state:
            if sent is not None and sent == self._token:
                self._accepted = True

    def _current_token(self) -> str:
        with self._fetching:  # a request arriving during a fetch waits here, then takes its token
            with self._state:
                token = self._token if self._clock() < self._refresh_at else None
            if token is None:
                token = self._fetch_token()
            return token

    def _fetch_token(self) -> str:
        if self._transport is None:
            raise RuntimeError("OAuth2 authenticator used before bind()")
        form = {"grant_type": "client_credentials"}
        if self.scope:
            form["scope"] = self.scope
        auth = None
        if self.client_auth == "basic":
            auth = HTTPBasicAuth(self.client_id, self._client_secret)
        else:
            form |= {"client_id": self.client_id, "client_secret": self._client_secret}
        request = requests.Request(
            "POST", self.token_url, data=form, auth=auth, headers={"Accept": "application/json"}
        )
        self.token_requests += 1
        started = self._clock()
        document = self._transport(request)
        token = document.get("access_token") if isinstance(document, dict) else None
        if not isinstance(token, str) or not token:
            raise SourceFatalError("OAuth2 token endpoint answered without an access_token")
        self._tokens_seen.append(token)
        expires_in = document.get("expires_in")
        if isinstance(expires_in, (int, float)) and expires_in > 0:
            # Refresh the margin before expiry, but never sooner than half-way through a short lifetime.
            refresh_at = started + max(expires_in - self.refresh_margin_s, expires_in / 2)
        else:
            refresh_at = float("inf")  # no expiry given: refresh only after a 401
        with self._state:
            self._token, self._refresh_at = token, refresh_at
            self._from_401, self._refresh_for_401 = self._refresh_for_401, False
            self._accepted = False
        _log.debug("OAuth2 token obtained, refresh in %.0fs", refresh_at - started)
        return token


def _bearer_token(request: requests.PreparedRequest) -> str | None:
    """The bearer token a prepared request carried."""
    value = request.headers.get("Authorization") or ""
    return value[7:] if value[:7].lower() == "bearer " else None


def build_authenticator(config: RestAuth, *, clock: Callable[[], float] = time.monotonic) -> Authenticator:
    """Resolve the secrets of an auth configuration (ConfigurationError when one is missing)."""
    if isinstance(config, ApiKeyAuth):
        return ApiKeyAuthenticator(
            config.location, config.name, resolve_secret(config.value_env, config.value_file)
        )
    if isinstance(config, BearerAuth):
        return BearerAuthenticator(resolve_secret(config.token_env, config.token_file))
    if isinstance(config, BasicAuth):
        return BasicAuthenticator(
            resolve_secret(config.username_env, None),
            resolve_secret(config.password_env, config.password_file),
        )
    if isinstance(config, OAuth2ClientCredentialsAuth):
        return OAuth2ClientCredentialsAuthenticator(
            config.token_url,
            resolve_secret(config.client_id_env, None),
            resolve_secret(config.client_secret_env, config.client_secret_file),
            scope=config.scope,
            refresh_margin_s=config.refresh_margin_s,
            client_auth=config.client_auth,
            clock=clock,
        )
    assert isinstance(config, NoAuth)
    return Authenticator()
