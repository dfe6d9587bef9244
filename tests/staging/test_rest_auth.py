"""Authentication against a real HTTP server, and secrets kept out of logs and errors."""

from __future__ import annotations

import base64
import json
import logging
import socket
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from etl_shared import ConfigurationError, SourceFatalError, SourceTransientError
from etl_staging import Batch
from etl_staging._rest import RestAuth, RestConnection, RestEntity, RestExtractor

SECRET = "sk_live_5up3r-s3cret+/="
DATA = [{"id": i} for i in range(1, 6)]


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def make_extractor(
    base_url: str,
    auth: dict[str, Any],
    entity: dict[str, Any] | None = None,
    fake: FakeTime | None = None,
    **connection: Any,
) -> RestExtractor:
    fake = fake or FakeTime()
    return RestExtractor(
        "api",
        RestConnection.model_validate({"base_url": base_url, "max_retries": 2, **connection}),
        TypeAdapter(RestAuth).validate_python(auth),
        RestEntity.model_validate({"name": "things", "path": "/things", **(entity or {})}),
        batch_size=1000,
        sleep=fake.sleep,
        clock=fake.clock,
    )


def records(ex: RestExtractor) -> list[dict[str, Any]]:
    return [
        dict(zip(item.columns, row, strict=True))
        for item in ex.extract(None)
        if isinstance(item, Batch)
        for row in item.rows
    ]


def paged(request: Request) -> Response:
    page = int(request.args.get("page", "1"))
    return Response(json.dumps(DATA[(page - 1) * 2 : page * 2]), content_type="application/json")


PAGED = {"pagination": {"type": "page_number"}}


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("REST_TEST_KEY", SECRET)
    return "REST_TEST_KEY"


# ---------------------------------------------------------------------------------- api key


class TestApiKey:
    def test_in_a_header(self, httpserver: HTTPServer, secret_env: str) -> None:
        httpserver.expect_request("/things", headers={"X-Api-Key": SECRET}).respond_with_json(DATA)
        auth = {"type": "api_key", "in": "header", "name": "X-Api-Key", "value_env": secret_env}

        assert records(make_extractor(httpserver.url_for("/"), auth)) == DATA

    def test_in_the_query_never_logged_nor_raised(
        self, httpserver: HTTPServer, secret_env: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG)
        seen: list[str | None] = []

        def handler(request: Request) -> Response:
            seen.append(request.args.get("apikey"))
            page = int(request.args.get("page", "1"))
            if page == 2 and len(seen) == 2:
                return Response("overloaded", status=503)  # a retry is logged with the URL
            if page == 3:
                return Response(f"no page 3 for apikey={SECRET}", status=404)  # an error echoing the key
            return paged(request)

        httpserver.expect_request("/things").respond_with_handler(handler)
        auth = {"type": "api_key", "in": "query", "name": "apikey", "value_env": secret_env}
        ex = make_extractor(httpserver.url_for("/"), auth, PAGED)

        with pytest.raises(SourceFatalError) as info:
            records(ex)

        assert seen == [SECRET] * 4  # sent on every request, retries included
        message = str(info.value)
        assert "not found (HTTP 404)" in message and "apikey=***" in message
        # Every line but the test server's own access log (werkzeug) is ours or urllib3's.
        logged = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("werkzeug"))
        assert "apikey=***" in logged  # the retry warning and urllib3's request lines are there, scrubbed
        for text in (message, logged, json.dumps(ex.state.metadata)):
            assert SECRET not in text
            assert "5up3r" not in text

    def test_in_the_query_with_a_connection_error(self, secret_env: str) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        auth = {"type": "api_key", "in": "query", "name": "key", "value_env": secret_env}
        ex = make_extractor(f"http://127.0.0.1:{port}/", auth, max_retries=0)

        with pytest.raises(SourceTransientError) as info:
            records(ex)
        assert "5up3r" not in str(info.value)
        assert info.value.__cause__ is None and info.value.__suppress_context__

    def test_a_next_link_echoing_the_key_sends_it_once(self, httpserver: HTTPServer, secret_env: str) -> None:
        def handler(request: Request) -> Response:
            assert request.args.getlist("k") == [SECRET]
            if "page" in request.args:
                return Response(json.dumps(DATA[2:]), content_type="application/json")
            headers = {"Link": f'</things?page=2&k={SECRET}>; rel="next"'}
            return Response(json.dumps(DATA[:2]), headers=headers, content_type="application/json")

        httpserver.expect_request("/things").respond_with_handler(handler)
        auth = {"type": "api_key", "in": "query", "name": "k", "value_env": secret_env}
        ex = make_extractor(httpserver.url_for("/"), auth, {"pagination": {"type": "link_header"}})

        assert records(ex) == DATA
        assert len(httpserver.log) == 2

    @pytest.mark.parametrize(("host", "kept"), [("localhost", True), ("127.0.0.1", False)])
    def test_a_redirect_to_another_host_drops_the_key_header(
        self, httpserver: HTTPServer, secret_env: str, host: str, kept: bool
    ) -> None:
        port = httpserver.port
        httpserver.expect_request("/things").respond_with_response(
            Response(status=302, headers={"Location": f"http://{host}:{port}/moved"})
        )
        received: list[str | None] = []

        def moved(request: Request) -> Response:
            received.append(request.headers.get("X-Api-Key"))
            return Response(json.dumps(DATA), content_type="application/json")

        httpserver.expect_request("/moved").respond_with_handler(moved)
        auth = {"type": "api_key", "in": "header", "name": "X-Api-Key", "value_env": secret_env}

        assert records(make_extractor(f"http://localhost:{port}/", auth)) == DATA
        assert received == [SECRET if kept else None]

    def test_a_missing_secret_is_named_not_shown(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("REST_TEST_ABSENT", raising=False)
        auth = {"type": "api_key", "in": "query", "name": "k", "value_env": "REST_TEST_ABSENT"}
        with pytest.raises(ConfigurationError, match="REST_TEST_ABSENT"):
            make_extractor("http://127.0.0.1:9/", auth)


# ------------------------------------------------------------------------- bearer and basic


def test_bearer_token_from_a_secret_file(
    httpserver: HTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "api_token").write_text(SECRET + "\n", encoding="utf-8")
    monkeypatch.setenv("ETL_SECRETS_DIR", str(tmp_path))
    httpserver.expect_request("/things", headers={"Authorization": f"Bearer {SECRET}"}).respond_with_json(
        DATA
    )

    assert (
        records(make_extractor(httpserver.url_for("/"), {"type": "bearer", "token_file": "api_token"}))
        == DATA
    )


def test_basic_auth(httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REST_TEST_USER", "etl")
    monkeypatch.setenv("REST_TEST_PASSWORD", SECRET)
    expected = "Basic " + base64.b64encode(f"etl:{SECRET}".encode()).decode()
    httpserver.expect_request("/things", headers={"Authorization": expected}).respond_with_json(DATA)
    auth = {"type": "basic", "username_env": "REST_TEST_USER", "password_env": "REST_TEST_PASSWORD"}

    assert records(make_extractor(httpserver.url_for("/"), auth)) == DATA


def test_refused_credentials_are_fatal_and_not_retried(httpserver: HTTPServer, secret_env: str) -> None:
    httpserver.expect_request("/things").respond_with_data("nope", status=401)
    with pytest.raises(SourceFatalError, match=r"credentials refused \(HTTP 401\)"):
        records(make_extractor(httpserver.url_for("/"), {"type": "bearer", "token_env": secret_env}))
    assert len(httpserver.log) == 1


# ---------------------------------------------------------------------------------- OAuth2


class TokenServer:
    """Issues tok1, tok2... and remembers the forms it received; the API accepts only live tokens."""

    def __init__(self, httpserver: HTTPServer, *, expires_in: int = 3600) -> None:
        self.forms: list[dict[str, str]] = []
        self.live: set[str] = set()
        self.used: list[str] = []
        self.expires_in = expires_in
        self.on_page: dict[int, Any] = {}
        httpserver.expect_request("/oauth/token", method="POST").respond_with_handler(self.token)
        httpserver.expect_request("/things").respond_with_handler(self.api)
        self.url = httpserver.url_for("/oauth/token")

    def token(self, request: Request) -> Response:
        self.forms.append(dict(request.form))
        token = f"tok{len(self.forms)}"
        self.live.add(token)
        body = {"access_token": token, "token_type": "Bearer", "expires_in": self.expires_in}
        return Response(json.dumps(body), content_type="application/json")

    def api(self, request: Request) -> Response:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        self.used.append(token)
        if token not in self.live:
            return Response("invalid token", status=401)
        page = int(request.args.get("page", "1"))
        if page in self.on_page:
            self.on_page.pop(page)()
        return paged(request)


@pytest.fixture
def oauth_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("REST_TEST_CLIENT_ID", "etl-client")
    monkeypatch.setenv("REST_TEST_CLIENT_SECRET", SECRET)
    return {"client_id_env": "REST_TEST_CLIENT_ID", "client_secret_env": "REST_TEST_CLIENT_SECRET"}


def oauth(server: TokenServer, env: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {"type": "oauth2_client_credentials", "token_url": server.url, **env, **extra}


class TestOAuth2ClientCredentials:
    def test_token_is_fetched_once_and_cached_across_pages(
        self, httpserver: HTTPServer, oauth_env: dict[str, str], caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG)
        server = TokenServer(httpserver)
        ex = make_extractor(httpserver.url_for("/"), oauth(server, oauth_env, scope="things.read"), PAGED)

        assert records(ex) == DATA
        assert server.forms == [
            {
                "grant_type": "client_credentials",
                "scope": "things.read",
                "client_id": "etl-client",
                "client_secret": SECRET,
            }
        ]
        assert server.used == ["tok1"] * 4
        assert SECRET not in caplog.text

    def test_client_credentials_as_basic_auth(
        self, httpserver: HTTPServer, oauth_env: dict[str, str]
    ) -> None:
        server = TokenServer(httpserver)
        ex = make_extractor(httpserver.url_for("/"), oauth(server, oauth_env, client_auth="basic"))

        assert records(ex) == DATA[:2]
        assert server.forms == [{"grant_type": "client_credentials"}]
        token_request = httpserver.log[0][0]
        assert token_request.authorization is not None
        assert token_request.authorization.password == SECRET

    def test_token_is_refreshed_before_it_expires(
        self, httpserver: HTTPServer, oauth_env: dict[str, str]
    ) -> None:
        server = TokenServer(httpserver, expires_in=300)
        fake = FakeTime()

        def later() -> None:
            fake.now += 241  # past expires_in - refresh_margin_s (300 - 60)

        server.on_page[2] = later
        ex = make_extractor(httpserver.url_for("/"), oauth(server, oauth_env), PAGED, fake=fake)

        assert records(ex) == DATA
        assert server.used == ["tok1", "tok1", "tok2", "tok2"]
        assert len(server.forms) == 2

    def test_a_401_mid_pull_refreshes_once_and_completes(
        self, httpserver: HTTPServer, oauth_env: dict[str, str]
    ) -> None:
        server = TokenServer(httpserver)
        server.on_page[2] = lambda: server.live.discard("tok1")  # revoked after page 2 is served
        ex = make_extractor(httpserver.url_for("/"), oauth(server, oauth_env), PAGED)

        assert records(ex) == DATA
        assert server.used == ["tok1", "tok1", "tok1", "tok2", "tok2"]  # page 3 refused, then tok2
        assert len(server.forms) == 2
        assert ex.state.metadata["retries"] == 0 and ex.state.metadata["pages"] == 4

    def test_a_second_401_is_fatal(self, httpserver: HTTPServer, oauth_env: dict[str, str]) -> None:
        server = TokenServer(httpserver)
        server.live = _Nothing()
        ex = make_extractor(httpserver.url_for("/"), oauth(server, oauth_env), PAGED)

        with pytest.raises(SourceFatalError, match=r"credentials refused \(HTTP 401\)") as info:
            records(ex)
        assert server.used == ["tok1", "tok2"] and len(server.forms) == 2
        assert "tok1" not in str(info.value) and "tok2" not in str(info.value)

    def test_token_endpoint_failures_are_classified_like_any_request(
        self, httpserver: HTTPServer, oauth_env: dict[str, str]
    ) -> None:
        answers = [Response("down", status=503), Response("bad client", status=401)]
        httpserver.expect_request("/oauth/token").respond_with_handler(lambda request: answers.pop(0))
        fake = FakeTime()
        auth = {
            "type": "oauth2_client_credentials",
            "token_url": httpserver.url_for("/oauth/token"),
            **oauth_env,
        }
        ex = make_extractor(httpserver.url_for("/"), auth, fake=fake)

        with pytest.raises(SourceFatalError, match=r"POST .*/oauth/token: credentials refused \(HTTP 401\)"):
            records(ex)
        assert len(fake.sleeps) == 1  # the 503 was retried, the 401 was not

    def test_a_token_response_without_a_token_is_fatal(
        self, httpserver: HTTPServer, oauth_env: dict[str, str]
    ) -> None:
        httpserver.expect_request("/oauth/token").respond_with_json({"error": "unsupported"})
        auth = {
            "type": "oauth2_client_credentials",
            "token_url": httpserver.url_for("/oauth/token"),
            **oauth_env,
        }
        with pytest.raises(SourceFatalError, match="without an access_token"):
            records(make_extractor(httpserver.url_for("/"), auth))


class _Nothing(set[str]):
    """A token set that accepts nothing, whatever is added."""

    def add(self, element: str) -> None:
        pass
