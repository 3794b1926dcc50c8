"""Requests a browser would never send, over a raw socket to a real `staybook serve` process: the
raw request line matters here (httpx normalises dot segments before sending, uvicorn does not)."""

from __future__ import annotations

import json
import socket
import uuid

import pytest

from tests.integration.test_catalog_api import jpeg_with_gps
from tests.servers import servers

pytestmark = pytest.mark.e2e


def raw_request(port: int, head: str, body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """Sends `head` (request line and headers, without the blank line) as bytes; (status, headers, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(head.encode("latin-1") + b"\r\nConnection: close\r\n\r\n" + body)
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
    header_block, _, content = received.partition(b"\r\n\r\n")
    status_line, *header_lines = header_block.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, content


@pytest.fixture
def media_server(pg_settings, tmp_path):
    """A server whose media directory holds one original (GPS and camera in its EXIF), one published
    variant, and a variant-shaped symlink that points at the original."""
    property_id, photo_id = uuid.uuid4(), uuid.uuid4()
    media = tmp_path / "media"
    original = media / "originals" / str(property_id) / f"{photo_id}.jpg"
    original.parent.mkdir(parents=True)
    original.write_bytes(jpeg_with_gps())
    variants = media / "photos" / str(property_id) / str(photo_id)
    variants.mkdir(parents=True)
    (variants / "thumb.jpg").write_bytes(b"published variant bytes")
    (variants / "large_webp.webp").symlink_to(original)
    with servers(pg_settings, env={"STAYBOOK_CATALOG__MEDIA_DIR": str(media)}) as (server,):
        yield server, property_id, photo_id, original


def test_media_serves_published_variants_and_never_an_original(media_server):
    server, property_id, photo_id, original = media_server
    variant = f"photos/{property_id}/{photo_id}/thumb.jpg"
    status, headers, body = raw_request(server.port, f"GET /api/v1/media/{variant} HTTP/1.1\r\nHost: x")
    assert (status, body) == (200, b"published variant bytes")
    assert "immutable" in headers["cache-control"]

    target = f"originals/{property_id}/{photo_id}.jpg"
    hostile = [
        target,
        f"photos/../{target}",
        f"photos/%2e%2e/{target}",
        f"photos/%2E%2E/{target}",
        f"photos/.%2e/{target}",
        f"photos%2f..%2f{target}",
        f"photos/..%2f{target}",
        f"photos/{property_id}/{photo_id}/../../../{target}",
        f"photos/{property_id}/%2e%2e/%2e%2e/{target}",
        f"photos/..%5c{target}",
        f"photos\\..\\{target}",
        f"photos/{property_id}/{photo_id}/large_webp.webp",  # a symlink out of photos/
        "photos/%00",
        f"photos/{property_id}/{photo_id}/thumb.jpg%00.png",
        f"photos/{property_id}/{photo_id}/thumb.jpg%00",
        "%2fetc%2fpasswd",
        "/etc/passwd",
        f"photos//{original}",
        f"photos/{original}",
        str(original).lstrip("/"),
        f"photos/{property_id}/{photo_id}/thumb.jpg/..",
        "photos/",
    ]
    for path in hostile:
        status, headers, body = raw_request(server.port, f"GET /api/v1/media/{path} HTTP/1.1\r\nHost: x")
        # NUL bytes are refused by the gateway (400) before routing; everything else is no media (404).
        assert status == (400 if "%00" in path else 404), (path, status, body[:200])
        assert headers["content-type"] == "application/problem+json", path
        assert b"Exif" not in body and b"staybook-camera" not in body, path


def test_an_invalid_content_length_gets_a_problem_not_plain_text(pg_settings):
    with servers(pg_settings) as (server,):
        for content_length in ("abc", "-1", "1, 2", "99999999999999999999999"):
            status, headers, body = raw_request(
                server.port,
                f"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Content-Length: {content_length}",
                b'{"email": "a@example.com"}',
            )
            assert status == 400, content_length
            assert headers["content-type"] == "application/problem+json"
            problem = json.loads(body)
            assert problem["status"] == 400 and problem["type"].endswith("/bad-request")


def test_a_500_answers_with_a_problem_and_keeps_the_connection_open(pg_settings):
    with servers(pg_settings, env={"STAYBOOK_TEST_FAULT": "property-read-raises"}) as (server,):
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as connection:
            reader = connection.makefile("rb")
            answers = []
            for path in (f"/api/v1/properties/{uuid.uuid4()}", "/healthz/live"):
                connection.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                status = int(reader.readline().split()[1])
                headers = {}
                while (line := reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = reader.read(int(headers["content-length"]))
                answers.append((status, headers, body))
    (broken_status, broken_headers, broken_body), (live_status, _, _) = answers
    assert broken_status == 500 and broken_headers["content-type"] == "application/problem+json"
    assert json.loads(broken_body)["type"].endswith("/internal-error")
    assert broken_headers.get("connection") != "close"
    assert live_status == 200  # the same connection answered the next request
