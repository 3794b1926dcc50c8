"""Every answer an in-process test client receives is checked against the app's OpenAPI document
(openapi-core): its status must be documented for the operation, its content type and body must
match, and so must its documented headers. A mismatch fails the test that made the request.

Requests are not validated: tests send invalid ones on purpose. Answers to paths or methods the
document does not describe (web pages, /docs, /metrics, media files, a 405) are left alone.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from urllib.parse import parse_qs

import httpx
import orjson
from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.templating.paths.exceptions import PathError
from werkzeug.datastructures import Headers, ImmutableMultiDict


class ContractViolation(AssertionError):
    """An answer the OpenAPI document does not describe."""


class _Request:
    def __init__(self, request: httpx.Request) -> None:
        self._request = request
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(parse_qs(request.url.query.decode(), keep_blank_values=True)),
            header=Headers(dict(request.headers)),
            cookie=ImmutableMultiDict(),
        )

    @property
    def host_url(self) -> str:
        return f"{self._request.url.scheme}://{self._request.url.netloc.decode()}"

    @property
    def path(self) -> str:
        return self._request.url.path

    @property
    def method(self) -> str:
        return self._request.method.lower()

    @property
    def body(self) -> bytes | None:
        return None  # finding the operation needs no body (multipart uploads are streamed)

    @property
    def content_type(self) -> str:
        return self._request.headers.get("content-type", "")


class _Response:
    def __init__(self, response: httpx.Response) -> None:
        self._response = response

    @property
    def status_code(self) -> int:
        return self._response.status_code

    @property
    def content_type(self) -> str:
        return self._response.headers.get("content-type", "")

    @property
    def headers(self) -> Headers:
        return Headers(list(self._response.headers.multi_items()))

    @property
    def data(self) -> bytes:
        return self._response.content


@lru_cache(maxsize=4)
def _openapi(document: bytes) -> OpenAPI:
    # openapi-core reads application/json only; problem+json is JSON too.
    config = Config(extra_media_type_deserializers={"application/problem+json": orjson.loads})
    return OpenAPI.from_dict(orjson.loads(document), config=config)


class ContractCheck:
    """`check(response)` raises ContractViolation for an answer the document does not describe."""

    def __init__(self, document: dict) -> None:
        # One parsed document per distinct spec (every app of a test run has the same one).
        encoded = orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
        self._openapi = _openapi(encoded)
        self.digest = hashlib.sha256(encoded).hexdigest()[:12]

    def check(self, response: httpx.Response) -> None:
        request = response.request
        if request.method == "HEAD" or response.status_code == 405:
            return
        try:
            self._openapi.validate_response(_Request(request), _Response(response))
        except PathError:
            return  # not a documented path or method
        except Exception as error:  # openapi-core's validation errors have no common base worth naming
            details = "; ".join(str(cause) for cause in _causes(error))
            raise ContractViolation(
                f"{request.method} {request.url.path} answered {response.status_code} "
                f"({response.headers.get('content-type')}), which the OpenAPI document does not describe: "
                f"{details}\nbody: {response.content[:500]!r}"
            ) from error

    async def hook(self, response: httpx.Response) -> None:
        await response.aread()
        self.check(response)


def _causes(error: BaseException):
    yield error
    yield from getattr(error, "schema_errors", ()) or ()
    if error.__cause__ is not None and error.__cause__ is not error:
        yield from _causes(error.__cause__)


def _document_of(base_url: str) -> dict:
    """The running server's own OpenAPI document."""
    origin = httpx.URL(base_url).copy_with(path="/", query=None)
    return httpx.get(str(origin.join("/openapi.json")), timeout=30).raise_for_status().json()


def checked_client(base_url: str, **kwargs) -> httpx.Client:
    """An httpx.Client for a running server whose every answer is checked against its OpenAPI document."""
    contract = ContractCheck(_document_of(base_url))

    def hook(response: httpx.Response) -> None:
        response.read()
        contract.check(response)

    return httpx.Client(base_url=base_url, event_hooks={"response": [hook]}, **kwargs)


def checked_async_client(base_url: str, **kwargs) -> httpx.AsyncClient:
    """The same as `checked_client`, asynchronous."""
    contract = ContractCheck(_document_of(base_url))
    return httpx.AsyncClient(base_url=base_url, event_hooks={"response": [contract.hook]}, **kwargs)
