"""Random input for the command lines (:mod:`test_fuzz_cli`): Hypothesis strategies.

Odd numbers and times, text with odd Unicode digits and lone surrogates, store URLs and report
places that are not what they seem, configuration documents with wrong types at every key, and
environment variables. ``{root}`` and ``{busy}`` in a value stand for the fuzz's sandbox
directory and a port something listens on; the test fills them in. No value asks DNS, binds a
port other than that one or an ephemeral one, runs a command, or names a writable place outside
the sandbox (/proc is no such place).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import yaml
from hypothesis import strategies as st

from exporters.config import DEFAULTS

ODD_NUMBERS = [".inf", "-.inf", ".nan", "inf", "nan", "NaN", "1e309", "-1", "0", "-0", "1e-300",
               "١٢", "１２", "²", "12٠", "0x10", "1_000", " 5 ", "", "9" * 30, "-9" * 30, "0.05",
               "1", "+3"]  # fmt: skip
ODD_TIMES = [
    "1969-12-31T23:59:59Z", "1970-01-01T00:00:00Z", "2262-04-11T23:47:16.854775807Z",
    "2262-04-11T23:47:16.854775808Z", "2263-01-01T00:00:00Z", "9999-12-31T23:59:59-23:59",
    "0001-01-01T00:00:00+23:59", "2026-11-29T10:00:00.١Z", "٢٠٢٦-١١-٢٩T10:00:00Z",
    "2026-11-29T10:00:00+99:99", "-99999999999d", "-1e400s", "-" + "9" * 400 + "d",
    str(2**63), str(2**63 - 1), str(2**64), "-1", "²", "١٢٣", "now", "-15m", "0", "",
]  # fmt: skip
# An argument or variable that is not UTF-8 reaches Python as lone surrogates ("\udcff"), which
# a strict UTF-8 stdout cannot print.
TEXT = st.one_of(
    st.text(max_size=24).filter(lambda t: "\x00" not in t),
    st.text(st.sampled_from("ab\udcff\udcfe"), min_size=1, max_size=4),
)
UNICODE_DIGITS = st.text(st.characters(categories=("Nd", "No")), min_size=1, max_size=8)
WORDS = st.one_of(
    st.sampled_from(ODD_NUMBERS),
    TEXT,
    UNICODE_DIGITS,
    st.integers(-(2**80), 2**80).map(str),
    st.floats().map(str),
)
RFC3339 = st.builds(
    "{:04d}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}{}{}".format,
    st.integers(0, 9999), st.integers(0, 13), st.integers(0, 32), st.integers(0, 25),
    st.integers(0, 61), st.integers(0, 61),
    st.sampled_from(["", ".5", ".123456789", ".1234567890"]),
    st.sampled_from(["Z", "+00:00", "-23:59", "+24:00", "+99:99"]),
)  # fmt: skip
RELATIVE = st.builds(
    "-{}{}".format, st.one_of(st.integers(0, 10**30), st.floats(0, 1e30)), st.sampled_from("smhd")
)
TIMES = st.one_of(st.sampled_from(ODD_TIMES), RFC3339, RELATIVE, WORDS)
SECONDS = st.one_of(st.sampled_from(["0.05", "0.5", "1", "2"]), WORDS)  # valid half the time
YAML_VALUES = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), TEXT,
        st.sampled_from(["auto", "lanplus", "127.0.0.1", "http://localhost:1/metrics"]),
    ),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(TEXT, inner, max_size=3)),
    max_leaves=6,
)  # fmt: skip
NON_UTF8 = b"store: sqlite:///x.db\nhost: \xff\xfe caf\xe9\n"


PORTS = ["0", "{busy}", "-1", "65536", "99999999999999999999", "١٢", ".inf", "", "http", "8.5"]
# No address that is a name: that would ask DNS. 192.0.2.1 (TEST-NET-1) is no address here.
ADDRS = ["127.0.0.1", "::1", "", " ", "a" * 300, "192.0.2.1", "::ffff:192.0.2.1", "127.0.0.1\x00"]
STORES = st.one_of(
    st.sampled_from([
        "{root}/store.db", "sqlite://", "sqlite:///", "sqlite:///{root}/adir",
        "sqlite:///{root}/afile/x.db", "sqlite:////proc/x.db", "mysql://x/y", "influxdb://h:0/db",
        "influxdb://h:/db", "influxdb://h:99999/db", "influxdb://h:١٢/db", "influxdb://h:+1/db",
        "influxdb://h: 1/db", "influxdb://:8086/db", "influxdb://u:p@h/db", "influxdb://h/",
        "influxdb://h/a/b", "influxdb://[::1/db", "", "://", "sqlite:///\x00",
    ]),
    TEXT.filter(lambda t: "://" not in t),
    TEXT.map(lambda t: "sqlite:///{root}/" + t.replace("/", "_")),
)  # fmt: skip
OUTS = st.one_of(
    st.sampled_from(["{root}/report", "{root}/afile", "{root}/afile/sub", "/proc/tubai-report",
                     "/proc/self/status", "", "{root}/" + "x" * 300, "{root}/a\x00b"]),
    TEXT.map(lambda t: "{root}/out-" + t.replace("/", "_")),
)  # fmt: skip


def _leaf_paths(tree: Mapping, prefix: str = "") -> list[str]:
    paths = []
    for key, value in tree.items():
        paths.append(prefix + key)
        if isinstance(value, dict):
            paths.extend(_leaf_paths(value, f"{prefix}{key}."))
    return paths


KEY_PATHS = [*_leaf_paths(DEFAULTS), "nope", "sources.nope", "sources.rapl.nope"]
ENV_NAMES = ["TUBAI_" + p.upper().replace(".", "__") for p in KEY_PATHS]
SAFE = {  # no random port, address or command: see above
    "metrics.port": PORTS,
    "metrics.addr": ADDRS,
    "sources.ipmi.ipmitool": ["ipmitool", "/nonexistent/ipmitool", "", "5", "[]", "' '"],
}


@st.composite
def config_docs(draw: st.DrawFn) -> object:
    """A YAML document: wrong types, odd numbers, unknown keys at random key paths."""
    if draw(st.booleans()):
        return draw(YAML_VALUES)  # not a mapping at all, now and then
    doc: dict = {}
    for path in draw(st.lists(st.sampled_from(KEY_PATHS), max_size=4, unique=True)):
        *parents, leaf = path.split(".")
        node = doc
        for key in parents:
            node = node.setdefault(key, {}) if isinstance(node.get(key, {}), dict) else {}
        if path in SAFE:
            node[leaf] = _scalar(draw(st.sampled_from(SAFE[path])))
        elif path == "store":
            node[leaf] = draw(STORES)
        else:  # the default as often as not, so that the rest of a document gets used
            node[leaf] = draw(st.one_of(st.just(_default(path)), YAML_VALUES))
    return doc


def _scalar(text: str) -> object:
    """``text`` read as a YAML scalar, as the environment's values are; else the text."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _default(path: str) -> object:
    node: object = DEFAULTS
    for key in path.split("."):
        node = node.get(key) if isinstance(node, dict) else None
    return copy.deepcopy(node)  # a document drawn later must not change DEFAULTS


@st.composite
def config_texts(draw: st.DrawFn) -> str:
    """A configuration file's text: a dumped document, or raw lines with YAML's odd scalars."""
    if draw(st.booleans()):
        return yaml.safe_dump(draw(config_docs()), allow_unicode=True)
    key = draw(st.sampled_from(["interval_s: {power: %s}", "flush_interval_s: %s",
                                "sources: {cpu_model: {idle_watts: %s}}", "metrics: {port: %s}",
                                "sources: {dcgm: {interval_s: %s}}", "host: %s"]))  # fmt: skip
    return key % draw(st.one_of(st.sampled_from(ODD_NUMBERS), UNICODE_DIGITS))


def _env_value(name: str) -> st.SearchStrategy[str]:
    path = KEY_PATHS[ENV_NAMES.index(name)]
    if path in SAFE:
        return st.sampled_from(SAFE[path]).filter(lambda v: "\x00" not in v)
    if path == "store":
        return STORES.filter(lambda v: "\x00" not in v)
    surrogate = st.just("\udcff\udcfe")  # what a variable that is not UTF-8 becomes
    return st.one_of(WORDS, surrogate, YAML_VALUES.map(lambda v: yaml.safe_dump(v).strip()))


ENVS = st.one_of(
    st.just({}),
    st.lists(
        st.sampled_from(ENV_NAMES).flatmap(lambda n: st.tuples(st.just(n), _env_value(n))),
        max_size=3,
    ).map(dict),
)
