"""The InfluxDB v1 HTTP API as the InfluxDB store uses it: ``/write`` and ``/query``.

That API is served by InfluxDB 1.x, by 2.x (the bucket is the database; ``Token`` auth) and by
3.x, so this one client covers all three. This module is the one place that turns requests'
exceptions and the server's answers into tubai's messages, each naming the fix.

Writes are gzip-compressed line protocol at nanosecond precision, POSTed with the standard
library's ``http.client`` on one kept-alive connection (:class:`_WriteConnection`: a quarter of
requests' CPU per POST); a missing database is created once (``create_database``). Points the
server refuses for good (HTTP 400, 413 or 422: unparsable line, field type conflict) are found
by splitting the batch, resending being idempotent.
Queries are InfluxQL, answered in chunks of JSON.

Over TLS both connections verify the server's certificate against the endpoint's CA file (else
the public CAs): a certificate that does not verify, or a credential the server refuses (a
revoked one), is one line naming the fix, and the sender keeps the points spooled meanwhile.
"""

from __future__ import annotations

import gzip
import http.client
import json
import logging
import re
import ssl
from collections.abc import Iterator
from urllib.parse import urlencode

import requests
from requests.utils import DEFAULT_CA_BUNDLE_PATH

from exporters.errors import DatabaseNotFound, StoreError, UsageError
from exporters.stores import influxql
from exporters.stores.influxdb_url import CA_HELP, CREDENTIALS_HELP, Credentials, Endpoint
from exporters.stores.sender import Retry

log = logging.getLogger(__name__)

_BAD_DATA = (400, 413, 422)  # the batch itself is refused: split it, keep what stays refused
_DROPPED = re.compile(r"dropped=(\d+)")
_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")]+)")
# Fewer, larger chunks: InfluxDB 1.6 serves 360k points in 0.63 s instead of 0.95 s.
_CHUNK_SIZE = "100000"
# A revoked or wrong credential: where a new one comes from (README, "A lab of machines").
REFUSED_HELP = (
    "revoked or wrong: mint a new one on the central machine with `make token HOST=<this host>` "
    f"and {CREDENTIALS_HELP.replace('set ', 'set it as ', 1)}"
)
# What Go's TLS server answers a plain-HTTP request with: not bad data, a wrong URL scheme.
_PLAIN_TO_TLS = "http request to an https server"


class InfluxDBAPI:
    """``/write`` and ``/query`` of one database on one server.

    :meth:`write` runs on the sender's thread and :meth:`series` on the readers', each with its
    own HTTP connection or session (neither is thread-safe).
    """

    def __init__(
        self,
        endpoint: Endpoint,
        credentials: Credentials,
        *,
        timeout_s: float = 10.0,
        create_database: bool = True,
    ) -> None:
        self.base_url = endpoint.base_url
        self.database = endpoint.database
        self.timeout_s = timeout_s
        self.create_database = create_database
        self.ca_file = endpoint.ca_file
        tls = tls_context(endpoint) if endpoint.scheme == "https" else None
        self._send_http = _session(credentials, self.ca_file)
        self._read_http = _session(credentials, self.ca_file)
        query = urlencode({"db": self.database, "precision": "ns"})
        headers = _auth_headers(self._send_http, self.base_url)
        self._writes = _WriteConnection(endpoint, f"/write?{query}", headers, timeout_s, tls)

    # -- writing ------------------------------------------------------------------------------

    def write(self, lines: list[str]) -> list[tuple[str, str]]:
        """Send ``lines``; return ``(line, reason)`` for each refused for good.

        Raises :class:`~exporters.stores.sender.Retry` when the whole batch must wait.
        """
        status, body = self._post(lines)
        if status < 300:
            return []
        if status not in _BAD_DATA or _PLAIN_TO_TLS in body.lower():
            raise Retry(self._write_error(status, body))
        rejected: list[tuple[str, str]] = []
        self._isolate(lines, status, body, rejected)
        return rejected

    def _isolate(
        self, lines: list[str], status: int, body: str, out: list[tuple[str, str]]
    ) -> None:
        """Split a refused batch until every refused line is found (resending is idempotent)."""
        dropped = _DROPPED.search(body)
        if len(lines) == 1 or (dropped and int(dropped.group(1)) >= len(lines)):
            out.extend((line, f"HTTP {status}: {_message(body)}") for line in lines)
            return
        mid = len(lines) // 2
        for half in (lines[:mid], lines[mid:]):
            status, body = self._post(half)
            if status < 300:
                continue
            if status not in _BAD_DATA:
                raise Retry(self._write_error(status, body))
            self._isolate(half, status, body, out)

    def _post(self, lines: list[str]) -> tuple[int, str]:
        """POST one batch to /write, creating the database once if it is missing."""
        # level 1: level 5 took twice the CPU (3 to 6 us a point) for some 10% fewer bytes
        data = gzip.compress("\n".join(lines).encode("utf-8"), compresslevel=1)
        status, body = self._post_write(data)
        if status == 404 and "not found" in body.lower() and self.create_database:
            self._create_database()
            status, body = self._post_write(data)
        return status, body

    def _post_write(self, data: bytes) -> tuple[int, str]:
        try:
            return self._writes.post(data)
        except TimeoutError as e:  # socket.timeout
            raise Retry(f"no answer within {self.timeout_s:g} s") from e
        except ssl.SSLError as e:
            raise Retry(_tls_error(e, self.ca_file)) from e
        except (OSError, http.client.HTTPException) as e:
            why = getattr(e, "strerror", None) or str(e) or type(e).__name__
            raise Retry(f"unreachable ({' '.join(why.split())})") from e

    def _create_database(self) -> None:
        q = influxql.create_database(self.database)
        try:
            r = self._send_http.post(
                f"{self.base_url}/query", data={"q": q}, timeout=self.timeout_s
            )
            error = r.text if r.status_code >= 300 else _result_error(r.text)
        except requests.RequestException as e:
            raise Retry(_describe(e, self.timeout_s, self.ca_file)) from e
        if error:
            raise Retry(
                f"database {self.database!r} does not exist and could not be created "
                f"(HTTP {r.status_code}: {_message(error)}): create it (InfluxDB 2.x: a bucket "
                "with a DBRP mapping)"
            )
        log.info("created database %r on InfluxDB at %s", self.database, self.base_url)

    def _write_error(self, status: int, body: str) -> str:
        if status in (401, 403):
            return f"credentials refused (HTTP {status}): {_message(body)}; {REFUSED_HELP}"
        if _PLAIN_TO_TLS in body.lower():
            return "the server speaks TLS: use an influxdb+https:// store URL"
        if status == 404:
            return (
                f"database {self.database!r} not found (HTTP 404): create it, or let the store "
                "create it (create_database=True)"
            )
        return f"HTTP {status}: {_message(body)}"

    # -- reading ------------------------------------------------------------------------------

    def series(self, q: str) -> Iterator[dict]:
        """The series of one InfluxQL query, chunk by chunk, in the server's order.

        Raises :class:`StoreError` naming the fix when the server does not answer, refuses the
        credentials or the query; :class:`DatabaseNotFound` (one) when it has no such database.
        """
        for doc in self._query(q):
            for result in doc.get("results") or []:
                if result.get("error"):
                    raise self._read_error(result["error"])
                yield from result.get("series") or []

    def _query(self, q: str) -> list[dict]:
        """Run one InfluxQL query; return its (chunked) JSON documents."""
        params = {"db": self.database, "q": q, "epoch": "ns", "chunked": "true"}
        params["chunk_size"] = _CHUNK_SIZE
        try:
            r = self._read_http.get(f"{self.base_url}/query", params=params, timeout=self.timeout_s)
        except requests.exceptions.SSLError as e:
            why = _describe(e, self.timeout_s, self.ca_file)
            raise StoreError(f"InfluxDB at {self.base_url}: {why}") from e
        except requests.RequestException as e:
            why = _describe(e, self.timeout_s, self.ca_file)
            raise StoreError(
                f"InfluxDB at {self.base_url} did not answer a query ({why}): start it, "
                "or check the store URL"
            ) from e
        if r.status_code in (401, 403):
            raise StoreError(
                f"InfluxDB at {self.base_url} refused the credentials (HTTP {r.status_code}): "
                f"{REFUSED_HELP}"
            )
        try:
            docs = [json.loads(chunk) for chunk in r.content.splitlines() if chunk.strip()]
        except ValueError:
            docs = []
        if r.status_code >= 300 or not docs:
            raise self._read_error(f"HTTP {r.status_code}: {_message(r.text)}")
        for doc in docs:
            if doc.get("error"):
                raise self._read_error(doc["error"])
        return docs

    def _read_error(self, error: str) -> StoreError:
        if "database not found" in error:
            return DatabaseNotFound(
                f"database {self.database!r} not found on InfluxDB at {self.base_url}: nothing "
                "was written to it yet, or the store URL names another database"
            )
        return StoreError(f"InfluxDB at {self.base_url} refused a query: {_message(error)}")

    def close(self) -> None:
        self._writes.close()
        self._send_http.close()
        self._read_http.close()


class _WriteConnection:
    """POSTs to one path of ``endpoint`` on a kept-alive ``http.client`` connection; one that the
    server closed while idle is opened again, once, for the same POST (a write is idempotent).
    Errors are ``OSError`` (``TimeoutError`` after ``timeout_s``) or ``HTTPException``."""

    def __init__(
        self,
        endpoint: Endpoint,
        target: str,
        headers: dict[str, str],
        timeout_s: float,
        tls: ssl.SSLContext | None,
    ) -> None:
        self.endpoint, self.target, self.timeout_s, self.tls = endpoint, target, timeout_s, tls
        self.headers = {**headers, **_WRITE_HEADERS}
        self._conn: http.client.HTTPConnection | None = None

    def post(self, body: bytes) -> tuple[int, str]:
        """(status, body text) of one POST of ``body``."""
        reused = self._conn is not None
        try:
            return self._post(body)
        except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected):
            if not reused:
                raise
            return self._post(body)  # the server closed the idle connection: once more, anew

    def _post(self, body: bytes) -> tuple[int, str]:
        conn = self._conn or self._connect()
        try:
            conn.request("POST", self.target, body=body, headers=self.headers)
            response = conn.getresponse()
            return response.status, response.read().decode("utf-8", "replace")
        except BaseException:
            self.close()  # in an unknown state: the next POST opens a new one
            raise

    def _connect(self) -> http.client.HTTPConnection:
        host, port = self.endpoint.host, self.endpoint.port
        if self.tls is not None:
            conn = http.client.HTTPSConnection(host, port, timeout=self.timeout_s, context=self.tls)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=self.timeout_s)
        self._conn = conn
        return conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


_WRITE_HEADERS = {"Content-Encoding": "gzip", "Content-Type": "text/plain; charset=utf-8"}


def _auth_headers(session: requests.Session, base_url: str) -> dict[str, str]:
    """The ``Authorization`` header ``session`` sends (its token or basic auth), if any."""
    prepared = session.prepare_request(requests.Request("POST", f"{base_url}/write"))
    auth = prepared.headers.get("Authorization")
    return {"Authorization": auth} if auth else {}


def tls_context(endpoint: Endpoint) -> ssl.SSLContext:
    """Verifies the server's certificate and name against the endpoint's CA file, else the CAs
    requests uses (certifi); :class:`UsageError` naming the CA option where that file is not a
    readable PEM certificate."""
    cafile = endpoint.ca_file or DEFAULT_CA_BUNDLE_PATH
    try:
        return ssl.create_default_context(cafile=cafile)
    except (OSError, ssl.SSLError) as e:
        why = getattr(e, "strerror", None) or getattr(e, "reason", None) or str(e)
        raise UsageError(f"CA file {cafile} cannot be used ({why}): {CA_HELP}, a PEM file") from e


def _tls_error(e: ssl.SSLError, ca_file: str | None) -> str:
    """One line for a failed TLS handshake: a certificate that does not verify names the CA."""
    if isinstance(e, ssl.SSLCertVerificationError):
        against = f"the CA in {ca_file}" if ca_file else "the public CAs, no CA file being given"
        why = e.verify_message or e.reason or "certificate verify failed"
        return f"the server's certificate does not verify ({why}) against {against}: {CA_HELP}"
    return (
        f"TLS handshake failed ({e.reason or e}): is the server serving https? "
        "Use influxdb:// for plain HTTP"
    )


def _session(credentials: Credentials, ca_file: str | None) -> requests.Session:
    s = requests.Session()
    s.trust_env = False  # no ~/.netrc credentials or proxies behind the user's back
    if ca_file:
        s.verify = ca_file
    if credentials.token:
        s.headers["Authorization"] = f"Token {credentials.token}"
    elif credentials.username:
        s.auth = (credentials.username, credentials.password or "")
    return s


def _result_error(text: str) -> str | None:
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    if doc.get("error"):
        return str(doc["error"])
    for result in doc.get("results") or []:
        if result.get("error"):
            return str(result["error"])
    return None


def _message(body: str) -> str:
    """The ``error``/``message`` of a JSON error body, else the body, on one short line."""
    text = body
    try:
        doc = json.loads(body)
        if isinstance(doc, dict):
            text = str(doc.get("error") or doc.get("message") or body)
    except ValueError:
        pass
    text = " ".join(text.split())
    return text[:300] + ("..." if len(text) > 300 else "") if text else "(empty answer)"


def _describe(e: requests.RequestException, timeout_s: float, ca_file: str | None) -> str:
    if isinstance(e, requests.exceptions.SSLError):
        cause = _ssl_cause(e)
        return _tls_error(cause, ca_file) if cause else f"TLS failed ({_message(str(e))})"
    if isinstance(e, requests.Timeout):
        return f"no answer within {timeout_s:g} s"
    if isinstance(e, requests.ConnectionError):
        m = _ERRNO.search(str(e))
        return f"unreachable ({m.group(1).strip() if m else type(e).__name__})"
    return type(e).__name__


def _ssl_cause(e: BaseException) -> ssl.SSLError | None:
    """The ``ssl.SSLError`` behind a requests/urllib3 exception, if any."""
    seen: set[int] = set()
    stack: list[object] = [e]
    while stack:
        cur = stack.pop()
        if not isinstance(cur, BaseException) or id(cur) in seen:
            continue
        seen.add(id(cur))
        if isinstance(cur, ssl.SSLError):
            return cur
        stack += [cur.__cause__, cur.__context__, getattr(cur, "reason", None), *cur.args]
    return None


__all__ = ["REFUSED_HELP", "InfluxDBAPI", "tls_context"]
