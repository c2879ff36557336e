"""Where an InfluxDB store points, and with which credentials.

A store URL is ``influxdb://HOST[:PORT]/DBNAME`` (``influxdb+https://`` for TLS; the port
defaults to 8086, the database name is percent-decoded). It never holds credentials: they come
from the constructor or the environment (``TUBAI_INFLUXDB_TOKEN``, or ``TUBAI_INFLUXDB_USERNAME``
and ``TUBAI_INFLUXDB_PASSWORD``), and never appear in ``repr``, log lines or error messages
(:func:`redact` hides them in a URL quoted back to the user).

TLS: the server's certificate is always verified, against the CA file the URL names
(``influxdb+https://central:8086/tubai?ca=/etc/tubai/ca.pem``), else ``TUBAI_INFLUXDB_CA``, else
the public CAs (certifi). That is the one CA option (:func:`ca_file`): the exporter's config
``store`` key, ``TUBAI_STORE`` and every ``--store`` take it in the URL.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from exporters.errors import UsageError

DEFAULT_PORT = 8086
SCHEMES = {"influxdb": "http", "influxdb+http": "http", "influxdb+https": "https"}
URL_HELP = "use influxdb://HOST:8086/DBNAME (influxdb+https://HOST:8086/DBNAME?ca=CA.pem for TLS)"
CA_ENV = "TUBAI_INFLUXDB_CA"
CA_HELP = (
    "give the CA certificate that signed the server's as ?ca=/path/ca.pem in the store URL "
    f"or {CA_ENV}"
)
CREDENTIALS_HELP = (
    "set TUBAI_INFLUXDB_TOKEN, or TUBAI_INFLUXDB_USERNAME and TUBAI_INFLUXDB_PASSWORD"
)


@dataclass(frozen=True)
class Endpoint:
    """One database on one server: ``base_url`` to send HTTP to, ``url`` to show."""

    scheme: str
    host: str
    port: int
    database: str
    ca_file: str | None = None
    """The CA file that verifies the server's certificate (https only); None: the public CAs."""

    @classmethod
    def parse(cls, base_url: str, database: str) -> Endpoint:
        """The server at ``base_url`` (``http[s]://host[:port]``) and ``database``.

        Raises :class:`UsageError` when no database is named or the URL holds credentials.
        """
        if not database:
            raise UsageError(f"InfluxDB store at {base_url} names no database: {URL_HELP}")
        parts = urlsplit(base_url)
        if parts.username is not None or parts.password is not None:
            raise UsageError(
                f"InfluxDB URL {redact(base_url)!r} holds credentials: {CREDENTIALS_HELP}"
            )
        host, port = parts.hostname or "localhost", _port(base_url, redact(base_url))
        return cls(parts.scheme or "http", host, port, database)

    @classmethod
    def from_url(cls, url: str) -> Endpoint:
        """The endpoint a store URL names; :class:`UsageError`, in one line, when it is not one."""
        shown = redact(url)
        port = _port(url, shown)
        parts = urlsplit(url)
        scheme = SCHEMES.get(parts.scheme)
        if scheme is None:
            raise UsageError(f"store URL {shown!r} is not an InfluxDB URL: {URL_HELP}")
        if parts.username is not None or parts.password is not None:
            raise UsageError(
                f"store URL {shown!r} holds credentials: remove them from the URL and "
                f"{CREDENTIALS_HELP}"
            )
        if not parts.hostname:
            raise UsageError(f"store URL {shown!r} names no host: {URL_HELP}")
        database = unquote(parts.path.strip("/"))
        if not database:
            raise UsageError(f"store URL {shown!r} names no database: {URL_HELP}")
        if "/" in database or parts.fragment:
            raise UsageError(f"store URL {shown!r} has more than a database name: {URL_HELP}")
        return cls(scheme, parts.hostname, port, database, _ca_param(parts.query, scheme, shown))

    @property
    def netloc(self) -> str:
        """``host:port``, an IPv6 host in brackets."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The server's HTTP root, e.g. ``http://localhost:8086``."""
        return f"{self.scheme}://{self.netloc}"

    @property
    def url(self) -> str:
        """The store URL, canonical: port always given, ``influxdb+https`` for TLS."""
        tls = "+https" if self.scheme == "https" else ""
        ca = f"?ca={quote(self.ca_file)}" if self.ca_file else ""
        return f"influxdb{tls}://{self.netloc}/{quote(self.database, safe='')}{ca}"

    @property
    def name(self) -> str:
        """``host_port_database``: names this endpoint's default spool directory."""
        return f"{self.host}_{self.port}_{self.database}"


@dataclass(frozen=True)
class Credentials:
    """A token (``Token`` auth, InfluxDB 2.x and 3.x) or a username and password (basic auth);
    the secrets are left out of ``repr``."""

    token: str | None = field(default=None, repr=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def resolve(
        cls, token: str | None = None, username: str | None = None, password: str | None = None
    ) -> Credentials:
        """Each value given, else its ``TUBAI_INFLUXDB_*`` environment variable."""
        env = os.environ.get
        return cls(
            token if token is not None else env("TUBAI_INFLUXDB_TOKEN"),
            username if username is not None else env("TUBAI_INFLUXDB_USERNAME"),
            password if password is not None else env("TUBAI_INFLUXDB_PASSWORD"),
        )


def ca_file(endpoint: Endpoint, given: str | None = None) -> str | None:
    """The CA file that verifies ``endpoint``'s certificate: ``given``, else the URL's ``ca=``,
    else ``TUBAI_INFLUXDB_CA``; None for plain HTTP or where none is named (the public CAs)."""
    if endpoint.scheme != "https":
        return None
    return given or endpoint.ca_file or os.environ.get(CA_ENV) or None


def _ca_param(query: str, scheme: str, shown: str) -> str | None:
    """The ``ca=PATH`` of a store URL's query, the only parameter it may have."""
    if not query:
        return None
    try:
        params = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        params = []
    if len(params) != 1 or params[0][0] != "ca" or not params[0][1].strip():
        raise UsageError(
            f"store URL {shown!r} has more than a database name: the only parameter is "
            f"?ca=/path/ca.pem ({URL_HELP})"
        )
    if scheme != "https":
        raise UsageError(
            f"store URL {shown!r} names a CA file for plain HTTP: use influxdb+https:// for TLS"
        )
    return params[0][1]


def _port(url: str, shown: str) -> int:
    """The port ``url`` names, :data:`DEFAULT_PORT` where it names none; :class:`UsageError`
    for one that is not a port a server listens on (``:0``, ``:``, ``:99999``, ``:+1``)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise UsageError(f"store URL {shown!r} is not valid ({e}): {URL_HELP}") from e
    if port == 0 or (port is None and parts.netloc.endswith(":")):
        raise UsageError(
            f"store URL {shown!r} names no usable port: give one from 1 to 65535, or leave out "
            f"':PORT' for {DEFAULT_PORT}"
        )
    return DEFAULT_PORT if port is None else port


def redact(url: str) -> str:
    """``url`` with any user:password@ part replaced, for error messages."""
    return re.sub(r"//[^/@]*@", "//***@", url)


__all__ = [
    "CA_ENV",
    "CA_HELP",
    "CREDENTIALS_HELP",
    "DEFAULT_PORT",
    "SCHEMES",
    "URL_HELP",
    "Credentials",
    "Endpoint",
    "ca_file",
    "redact",
]
