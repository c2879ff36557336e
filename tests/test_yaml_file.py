"""read_yaml: any file a user gives reads as its document, or fails as one UsageError line that
names the file, the problem and the fix; never another exception."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporters.errors import ConfigError, UsageError
from exporters.yaml_file import read_yaml

# Pieces that steer PyYAML into its corners: flow collections, anchors, explicit tags whose
# constructors raise ValueError/KeyError/AttributeError, dates, merge keys, control characters.
TOKENS = ["[", "]", "{", "}", ": ", ", ", "\n", "  ", "- ", "? ", "&a ", "*a", "<<: ", "'", '"',
          "!!int ", "!!float ", "!!timestamp ", "!!bool ", "!!binary ", "!!set ", "!!omap ",
          "!!python/object:os.system ", "2001-13-01", "2001-02-30", "0x", "0b2", "1e", "x", "1",
          "\x00", "\t", "%YAML 1.1\n", "---\n", "...\n", "\ufeff", "\udcff"]  # fmt: skip


def _one_usage_line(path: Path, data: bytes, what: str) -> None:
    path.write_bytes(data)
    try:
        read_yaml(path, what)
    except UsageError as e:
        text = str(e)
        assert "\n" not in text and "\r" not in text
        assert f"{what} {str(path)!r}" in text


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=200))
def test_any_bytes_read_or_fail_as_one_usage_line(tmp_path, data) -> None:
    _one_usage_line(tmp_path / "any.yaml", data, "plan")


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.sampled_from(TOKENS) | st.text(max_size=3), max_size=30).map("".join))
def test_yaml_like_text_reads_or_fails_as_one_usage_line(tmp_path, text) -> None:
    data = text.encode("utf-8", "surrogateescape" if "\udcff" in text else "strict")
    _one_usage_line(tmp_path / "like.yaml", data, "config file")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"a: caf\xe9\n", r"is not UTF-8 text \(byte 0xe9 at offset 6\): save it as UTF-8$"),
        (b"a: 1\nb: [1, 2\nc: 3\n", r"is not valid YAML at line 3: fix the syntax$"),
        (b"a: \x00\n", r"is not valid YAML \(character U\+0000 at offset 3\): fix the syntax$"),
        (b"[" * 5000, r"is nested too deeply: flatten it$"),
        (b"{a: " * 5000, r"is nested too deeply: flatten it$"),
        (b"day: 2001-13-01\n", r"cannot convert \(.month must be in 1..12.\): fix the value"),
        (b"n: " + b"7" * 5000, r"cannot convert \('Exceeds the limit .*\): fix the value"),
        (b"n: !!int 0x\n", r"cannot convert .*: fix the value, or quote it to keep it as text$"),
        (b"t: !!timestamp x\n", r"cannot convert .*: fix the value"),
        (b"b: !!bool x\n", r"cannot convert .*: fix the value"),
    ],
)  # fmt: skip
def test_each_problem_names_the_file_and_the_fix(tmp_path, data, message) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(data)
    with pytest.raises(UsageError, match=message) as caught:
        read_yaml(path, "plan")
    assert str(caught.value).startswith(("plan ", "cannot read plan "))
    assert f"plan {str(path)!r}" in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("name", ["missing.yaml", "."])
def test_an_unreadable_path_says_so_and_to_check_it(tmp_path, name) -> None:
    path = tmp_path / name  # missing, or a directory
    with pytest.raises(ConfigError, match=r"^cannot read config file '.*': .+; check the path$"):
        read_yaml(path, "config file", ConfigError)


def test_the_document_comes_back_as_yaml_reads_it(tmp_path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text("models: [a, b]\nwhen: '2001-13-01'\nn: 3\n", encoding="utf-8")
    assert read_yaml(str(path), "plan") == {"models": ["a", "b"], "when": "2001-13-01", "n": 3}
    path.write_bytes(b"")
    assert read_yaml(path, "plan") is None
