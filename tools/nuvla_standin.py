"""A Nuvla api-server stand-in: the HTTP contract of reference/catalog_standards.md section 1.

Nuvla's Clojure server cannot be built or run here (no Clojars, Elasticsearch, Kafka), so tests
talk to this small in-memory server instead, through the real ``nuvla-api`` client. It keeps
Nuvla's quirks: the doubled ``com.com.sixsq.nuvla.cookie`` session cookie, the collection ``id``
the client POSTs to, integer-only CIMI filter values (tools/cimi.py), the data-object state
machine with presigned S3 URLs (boto3, path-style) and 303 on download, 406 on data-record keys
with unregistered prefixes. On every data-object creation it publishes a JSON notification to
``mqtt://host:port/topic`` when given one (paho-mqtt). Secrets never reach a log line.

    python tools/nuvla_standin.py --port 0 --s3-endpoint http://127.0.0.1:9000
"""

from __future__ import annotations

import argparse
import json
import logging
import secrets
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cimi
from nuvla_store import COOKIE, NuvlaHTTPError, Store

log = logging.getLogger("nuvla_standin")


class _Handler(BaseHTTPRequestHandler):
    """Routes ``/api/…`` to the Store; every error is Nuvla's JSON shape."""

    server: _Server
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

    def log_message(self, fmt: str, *args: Any) -> None:  # path and status only: no bodies, no cookies
        log.debug("%s %s", self.command, urlsplit(self.path).path)

    def _send(self, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _params(self, raw: bytes) -> dict[str, list[str]]:
        """CIMI parameters from the query string and, for PUT/DELETE on a collection, a form body."""
        params = parse_qs(urlsplit(self.path).query, keep_blank_values=True)
        if raw and "json" not in (self.headers.get("Content-Type") or ""):
            for key, values in parse_qs(raw.decode(), keep_blank_values=True).items():
                params.setdefault(key, []).extend(values)
        return params

    def _token(self) -> str | None:
        for part in (self.headers.get("Cookie") or "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE:
                return value
        return None

    def _handle(self) -> None:
        store = self.server.store
        raw = self._body()
        try:
            parts = [p for p in urlsplit(self.path).path.split("/") if p]
            if not parts or parts[0] != "api" or len(parts) < 2:
                raise NuvlaHTTPError(404, f"{self.path} not found")
            parts, method = parts[1:], self.command
            is_json = "json" in (self.headers.get("Content-Type") or "")
            try:
                body = json.loads(raw) if raw and is_json else {}
            except ValueError as exc:
                raise NuvlaHTTPError(400, "malformed JSON body") from exc
            if parts == ["session"] and method == "POST":
                result, token = store.login(body)
                cookie = f"{COOKIE}={token}; Path=/; HttpOnly"
                return self._send(201, result, {"Set-Cookie": cookie, "Location": result["resource-id"]})
            user, admin, sid = store.who(self._token())
            params = self._params(raw)
            if len(parts) == 1:
                rtype = parts[0]
                if method in ("GET", "PUT"):
                    return self._send(200, store.query(rtype, params, user, admin, sid))
                if method == "POST":
                    result = store.add(rtype, body, user, admin)
                    return self._send(201, result, {"Location": result["resource-id"]})
                if method == "DELETE" and self.headers.get("bulk") == "yes":
                    return self._send(200, store.delete_bulk(rtype, params, user, admin))
                raise NuvlaHTTPError(405, f"invalid method {method} for {rtype}")
            rid = "/".join(parts[:2])
            if len(parts) == 3:
                status, result = store.action(rid, parts[2], body, user, admin)
                return self._send(status, result, {"Location": result["uri"]} if status == 303 else None)
            if len(parts) > 3:
                raise NuvlaHTTPError(404, f"{self.path} not found")
            if method == "GET":
                return self._send(200, store.retrieve(rid, user, admin, params.get("select", [])))
            if method == "PUT":
                patch = "json-patch+json" in (self.headers.get("Content-Type") or "")
                return self._send(200, store.edit(rid, body, patch, params.get("select", []), user, admin))
            if method == "DELETE":
                return self._send(200, store.delete(rid, body if isinstance(body, dict) else {}, user, admin))
            raise NuvlaHTTPError(405, f"invalid method {method} for {rid}")
        except cimi.CimiError as exc:
            self._send(400, {"status": 400, "message": str(exc)})
        except NuvlaHTTPError as exc:
            self._send(exc.status, {"status": exc.status, "message": exc.message})
        except Exception as exc:  # never leak a traceback (or a secret in it) to the client
            log.exception("internal error on %s %s", self.command, urlsplit(self.path).path)
            self._send(500, {"status": 500, "message": f"internal error: {type(exc).__name__}"})

    do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    store: Store


class NuvlaStandin:
    """The stand-in on ``127.0.0.1:<port>`` in a background thread; ``.endpoint`` is for ``Api()``.

    ``users`` maps api-key ids (``credential/<uuid>``) to ``(secret, is_admin)``; by default one
    admin key is generated (``.key``, ``.secret``).
    """

    def __init__(
        self,
        port: int = 0,
        *,
        s3_endpoint: str | None = None,
        s3_region: str = "us-east-1",
        mqtt: str | None = None,
        users: dict[str, tuple[str, bool]] | None = None,
    ) -> None:
        if users is None:
            users = {f"credential/{uuid.uuid4()}": (secrets.token_urlsafe(16), True)}
        self.key, (self.secret, _) = next(iter(users.items()))
        self.store = Store(users, s3_endpoint, s3_region, mqtt)
        self.httpd = _Server(("127.0.0.1", port), _Handler)
        self.httpd.store = self.store
        self.endpoint = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="nuvla-standin", daemon=True)

    def start(self) -> NuvlaStandin:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def main(argv: list[str] | None = None) -> int:
    """Serve until interrupted; print the URL (and the api-key id, never its secret) on stdout."""
    parser = argparse.ArgumentParser(description="Nuvla api-server stand-in (in memory)")
    parser.add_argument("--port", type=int, default=0, help="0 = any free port")
    parser.add_argument("--s3-endpoint", help="S3 endpoint for credentials whose service has none")
    parser.add_argument("--s3-region", default="us-east-1")
    parser.add_argument("--mqtt", help="mqtt://host:port/topic for data-object notifications")
    parser.add_argument(
        "--credentials-file",
        type=Path,
        help="write the generated admin api-key as JSON {key, secret} here (mode 0600)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    server = NuvlaStandin(args.port, s3_endpoint=args.s3_endpoint, s3_region=args.s3_region, mqtt=args.mqtt)
    if args.credentials_file:
        args.credentials_file.touch(mode=0o600)
        args.credentials_file.write_text(json.dumps({"key": server.key, "secret": server.secret}))
    print(server.endpoint, flush=True)
    print(f"api-key {server.key}", flush=True)
    try:
        server.httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
