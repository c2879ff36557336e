"""Stores, chosen by URL: ``sqlite:///rel/path.db``, ``sqlite:////abs/path.db``,
``influxdb://host:8086/DBNAME`` (``influxdb+https://`` for TLS).

Credentials never appear in the URL: InfluxDB reads ``TUBAI_INFLUXDB_TOKEN`` or
``TUBAI_INFLUXDB_USERNAME``/``TUBAI_INFLUXDB_PASSWORD`` from the environment.
"""

from __future__ import annotations

import importlib
import os

from exporters.errors import UsageError
from exporters.stores.base import Store
from exporters.stores.influxdb_url import SCHEMES as INFLUXDB_SCHEMES

DEFAULT_STORE = "sqlite:///data/tubai.db"
_URL_HELP = "use sqlite:///data/tubai.db or influxdb://host:8086/DBNAME"

# Each URL scheme's store class, "module:Class", imported on first use (a SQLite user never
# loads requests or influxdb-client); it opens the URL with :meth:`Store.from_url`.
_STORES = {
    "sqlite": "exporters.stores.sqlite:SQLiteStore",
    **dict.fromkeys(INFLUXDB_SCHEMES, "exporters.stores.influxdb:InfluxDBStore"),
}


def default_store_url() -> str:
    """``TUBAI_STORE`` from the environment, else the embedded default."""
    return os.environ.get("TUBAI_STORE") or DEFAULT_STORE


def open_store(url: str | None = None) -> Store:
    """Open the store named by ``url`` (default: :func:`default_store_url`)."""
    url = url or default_store_url()
    scheme, sep, _ = url.partition("://")
    if not sep:
        raise UsageError(f"store URL {url!r} has no scheme: {_URL_HELP}")
    where = _STORES.get(scheme)
    if where is None:
        raise UsageError(
            f"store URL {url!r} has an unknown scheme {scheme!r}: use sqlite:///PATH "
            "or influxdb://host:8086/DBNAME"
        )
    module, _, name = where.partition(":")
    store_class: type[Store] = getattr(importlib.import_module(module), name)
    return store_class.from_url(url)


__all__ = ["DEFAULT_STORE", "Store", "default_store_url", "open_store"]
