"""Small HTTP client (stdlib ``http.client``) for talking to a vLLM server.

Every failure becomes one ``VllmFitError`` with one line:

* exit 2 (``VllmFitError``): a bad URL, or a server that answers with something that is not
  vLLM (HTTP 4xx, a body that is not JSON where JSON is expected);
* exit 3 (``ServerUnreachable``): nothing listening (connection refused), no complete
  answer within the timeout, the connection closed mid-response, HTTP 5xx.

The timeout is a deadline for the whole exchange, so a server that trickles bytes is slow too.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from typing import Any
from urllib.parse import urlsplit

from .errors import VllmFitError

__all__ = ["ServerUnreachable", "normalize_url", "get_text", "get_json", "post_json", "MAX_BODY_BYTES"]

MAX_BODY_BYTES = 64 * 1024 * 1024  # a /metrics page is ~100 KB; refuse to buffer a runaway body


class ServerUnreachable(VllmFitError):
    """The server could not be reached or broke off the answer."""

    exit_code = 3


def normalize_url(url: str) -> str:
    """``http://host:port`` from what a user types (``host:port``, ``http://host:port/metrics`` ...)."""
    raw = (url or "").strip()
    if not raw:
        raise VllmFitError("no server URL given (example: http://127.0.0.1:8000)")
    if "://" not in raw:
        raw = "http://" + raw
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError as exc:
        raise VllmFitError(f"{url!r} is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise VllmFitError(f"{url!r}: only http:// and https:// URLs are supported")
    if not parts.hostname:
        raise VllmFitError(f"{url!r} has no host (example: http://127.0.0.1:8000)")
    host = parts.hostname
    if ":" in host:
        host = f"[{host}]"
    path = parts.path.rstrip("/")
    for suffix in ("/metrics", "/v1/models", "/v1", "/health", "/version"):
        if path.endswith(suffix):
            path = path[: -len(suffix)]
            break
    return f"{parts.scheme}://{host}{':' + str(port) if port else ''}{path}"


def _request(base: str, method: str, path: str, timeout: float, body: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    parts = urlsplit(base)
    deadline = time.monotonic() + timeout
    conn_cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    where = f"{base}{path}"
    conn = conn_cls(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request(method, parts.path + path, body=body, headers=headers or {})
        resp = conn.getresponse()
        chunks: list[bytes] = []
        size = 0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout()
            if conn.sock is not None:
                conn.sock.settimeout(left)
            chunk = resp.read1(65536) if hasattr(resp, "read1") else resp.read(65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise VllmFitError(f"{where} sent more than {MAX_BODY_BYTES // (1024 * 1024)} MiB; not a vLLM answer")
        if resp.length:  # http.client reads a short body without complaint; Content-Length says more was due
            raise http.client.IncompleteRead(b"".join(chunks), resp.length)
        return resp.status, b"".join(chunks)
    except ConnectionRefusedError:
        raise ServerUnreachable(f"cannot connect to {base}: connection refused", "Is vLLM running and listening on that port?") from None
    except (socket.timeout, TimeoutError):
        raise ServerUnreachable(f"{where} did not answer within {timeout:g} s", "The server is slow or stuck; raise --timeout to wait longer") from None
    except (http.client.IncompleteRead, http.client.RemoteDisconnected, ConnectionResetError,
            BrokenPipeError, http.client.BadStatusLine) as exc:
        raise ServerUnreachable(f"{where}: the server closed the connection mid-response ({type(exc).__name__})") from None
    except socket.gaierror as exc:
        raise ServerUnreachable(f"cannot resolve the host of {base}: {exc.strerror or exc}") from None
    except http.client.HTTPException as exc:
        raise ServerUnreachable(f"{where}: broken HTTP answer ({type(exc).__name__}: {exc})") from None
    except OSError as exc:
        raise ServerUnreachable(f"cannot talk to {base}: {exc.strerror or exc}") from None
    finally:
        conn.close()


def _check_status(base: str, path: str, status: int, body: bytes) -> None:
    if status == 200:
        return
    snippet = body[:120].decode("utf-8", "replace").strip().replace("\n", " ")
    msg = f"{base}{path} answered HTTP {status}" + (f": {snippet}" if snippet else "")
    if status >= 500:
        raise ServerUnreachable(msg)
    raise VllmFitError(msg, "Is this the URL of a vLLM server (vllm serve)?")


def get_text(base: str, path: str, timeout: float = 10.0) -> str:
    status, body = _request(base, "GET", path, timeout)
    _check_status(base, path, status, body)
    return body.decode("utf-8", "replace")


def get_status(base: str, path: str, timeout: float = 5.0) -> int:
    """HTTP status of a GET (for /health polling); raises like ``get_text`` when nothing answers."""
    return _request(base, "GET", path, timeout)[0]


def _json(base: str, path: str, body: bytes) -> Any:
    try:
        return json.loads(body.decode("utf-8", "replace"))
    except ValueError:
        snippet = body[:80].decode("utf-8", "replace")
        raise VllmFitError(f"{base}{path} did not answer JSON (starts with {snippet!r})") from None


def get_json(base: str, path: str, timeout: float = 10.0) -> Any:
    status, body = _request(base, "GET", path, timeout)
    _check_status(base, path, status, body)
    return _json(base, path, body)


def post_json(base: str, path: str, payload: dict[str, Any], timeout: float = 60.0) -> Any:
    data = json.dumps(payload).encode()
    status, body = _request(base, "POST", path, timeout, body=data,
                            headers={"Content-Type": "application/json", "Accept": "application/json"})
    _check_status(base, path, status, body)
    return _json(base, path, body)
