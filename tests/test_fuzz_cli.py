"""Fuzz every command line: random arguments, configuration files and environment variables.

Each command's ``main(argv)`` runs in this process (much faster than a subprocess) with its real
options given random values: text with odd Unicode digits, non-finite and huge numbers, times
before 1970 and after 2262, wrong YAML types at every configuration key, files that are not
UTF-8, store URLs and ``--out`` places that are not what they seem. Whatever the input, a command
exits 0 or 2, prints no traceback, says what is wrong in one line, and ends: commands that would
run for long (``exporters run``, ``scoring serve``, ``benchmark run``) are kept to inputs that end
quickly or fail before starting, and an alarm turns a hang into a failure.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import signal
import socket
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from fuzz_inputs import (
    ENVS,
    NON_UTF8,
    OUTS,
    PORTS,
    SECONDS,
    STORES,
    TEXT,
    TIMES,
    WORDS,
    config_docs,
    config_texts,
)  # fmt: skip
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from benchmark.__main__ import main as benchmark_main
from benchmark.registry import MODELS
from exporters.__main__ import main as exporters_main
from exporters.config import load_config
from exporters.errors import UsageError
from exporters.sources import check_sources
from exporters.stores.influxdb_url import Endpoint
from exporters.stores.sqlite import SQLiteStore
from exporters.times import MAX_TIME_NS, parse_time
from scoring.__main__ import main as scoring_main

HANG_S = 30  # one command that runs longer than this has hung
FUZZ = settings(
    max_examples=int(os.environ.get("TUBAI_FUZZ_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@dataclass(frozen=True)
class Sandbox:
    """A directory the commands may write into, with the odd files the options name."""

    root: Path
    busy_port: int  # a port something already listens on

    @property
    def store(self) -> str:
        return f"sqlite:///{self.root}/store.db"

    def fill(self, value: str) -> str:
        """``value`` with ``{root}`` and ``{busy}`` filled in."""
        return value.replace("{root}", str(self.root)).replace("{busy}", str(self.busy_port))


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    root = tmp_path_factory.mktemp("fuzz")
    SQLiteStore(root / "store.db").close()
    (root / "afile").write_text("not a directory\n")
    (root / "non-utf8.yaml").write_bytes(NON_UTF8)
    (root / "adir").mkdir()
    (root / "sys").mkdir()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        yield Sandbox(root, busy.getsockname()[1])


# -- running a command -------------------------------------------------------------------------


class _Hang(BaseException):
    """Raised by the alarm in a command that runs past HANG_S."""


@dataclass
class Outcome:
    status: int | None
    stdout: str
    stderr: str
    crash: str = ""  # the traceback of an exception that escaped main()

    def check(self, argv: list[str]) -> None:
        """Exit 0 or 2, no traceback, and for 2 one line that says what is wrong."""
        event(f"{argv[0]} exit {self.status}")
        shown = f"argv={argv!r}\nstatus={self.status}\nstderr:\n{self.stderr}\n{self.crash}"
        assert not self.crash, shown
        assert self.status in (0, 2), shown
        assert "Traceback" not in self.stderr, shown
        if self.status == 2:
            lines = [line for line in self.stderr.splitlines() if not line.startswith("LOG ")]
            assert len(lines) == 1 and lines[0].strip(), shown


def _stream(errors: str) -> io.TextIOWrapper:
    """A UTF-8 stream as a terminal's: stdout strict, stderr backslashreplace."""
    return io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors=errors, write_through=True)


def _text(stream: io.TextIOWrapper) -> str:
    return stream.buffer.getvalue().decode("utf-8", "replace")  # type: ignore[attr-defined]


@contextlib.contextmanager
def _environment(env: Mapping[str, str], sandbox: Sandbox) -> Iterator[None]:
    """Only ``env``'s TUBAI_ variables (the store defaults to the sandbox's), in the sandbox."""
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    saved_signals = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for name in [n for n in os.environ if n.startswith("TUBAI_")]:
        del os.environ[name]
    os.environ["TUBAI_STORE"] = sandbox.store
    os.environ["TUBAI_SYSFS_ROOT"] = str(sandbox.root / "sys")
    os.environ.update({k: sandbox.fill(v) for k, v in env.items()})
    os.chdir(sandbox.root)
    try:
        yield
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        for sig, handler in saved_signals.items():
            signal.signal(sig, handler)


def _on_alarm(signum: int, frame: object) -> None:
    raise _Hang


def invoke(
    main: Callable[[list[str]], int],
    argv: list[str],
    sandbox: Sandbox,
    env: Mapping[str, str] | None = None,
) -> Outcome:
    """``main(argv)`` with its output, exit status and any escaped exception captured."""
    argv, env = [sandbox.fill(a) for a in argv], env or {}
    out, err = _stream("strict"), _stream("backslashreplace")
    handler = logging.StreamHandler(err)
    handler.setFormatter(logging.Formatter("LOG %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    old_alarm = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, HANG_S)
    status, crash = None, ""
    try:
        with (
            _environment(env, sandbox),
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
        ):
            try:
                status = main(argv)
            except SystemExit as e:
                status = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
                if not isinstance(e.code, int | None):
                    print(e.code, file=sys.stderr)
            except _Hang:
                crash = f"hung: still running after {HANG_S} s"
            except Exception:
                crash = traceback.format_exc()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_alarm)
        logging.getLogger().removeHandler(handler)
    return Outcome(status, _text(out), _text(err), crash)


# -- argument lists ----------------------------------------------------------------------------

EXTRA = st.one_of(
    st.sampled_from(["--nope", "-z", "--help", "-h", "--json", "=", "-", "--"]),
    TEXT.filter(lambda t: not t.startswith("-")),
)


def _short(text: str, limit: float = 0.2) -> str:
    """``text``, or a short duration where it reads as a longer one: nothing may run long."""
    try:
        value = float(text)
    except ValueError:
        return text
    return "0.05" if value > limit else text


@st.composite
def options(draw: st.DrawFn, table: Mapping[str, st.SearchStrategy | None]) -> list[str]:
    """A random subset of ``table``'s options (None: a flag), each with a drawn value."""
    argv: list[str] = []
    for name in draw(st.lists(st.sampled_from(sorted(table)), max_size=4, unique=True)):
        strategy = table[name]
        argv += [name] if strategy is None else [name, draw(strategy)]
    return argv + (draw(st.lists(EXTRA, max_size=1)) if draw(st.booleans()) else [])


CONFIGS = st.sampled_from(["{root}/config.yaml", "{root}/non-utf8.yaml", "{root}/adir",
                           "/nonexistent.yaml", "{root}/afile", ""])  # fmt: skip
PATHS = st.one_of(st.sampled_from(["{root}/sys", "/nonexistent", "", "{root}/afile"]), TEXT)
EXPORTERS = {"--config": CONFIGS, "--sysfs-root": PATHS, "--procfs-root": PATHS, "-v": None}
EXPORTERS_RUN = EXPORTERS | {
    "--store": STORES, "--interval": SECONDS, "--metrics-port": st.sampled_from(PORTS),
    "--host": TEXT,
}  # fmt: skip


SCORING = {
    "energy": {"--start": TIMES, "--end": TIMES, "--store": STORES, "--host": TEXT,
               "--count": TEXT, "--json": None},
    "runs": {"--since": TIMES, "--score": st.one_of(st.just("composite"), TEXT),
             "--reference": TEXT, "--json": None, "--store": STORES, "--at-best": None},
    "report": {"--out": OUTS, "--since": TIMES, "--reference": TEXT, "--store": STORES},
    "serve": {"--poll": SECONDS.map(_short), "--grace": SECONDS, "--store": STORES},
    "export": {"--out": OUTS, "--store": STORES},
    "verify": {"--help": None},  # it has no options
    "import": {"--store": STORES},
}  # fmt: skip
# What verify and import are given: no bundle, a store, odd files and places.
BUNDLES = st.one_of(st.sampled_from(["{root}/store.db", "{root}/afile", "{root}/adir",
                                     "{root}/non-utf8.yaml", "/nonexistent.tar.gz",
                                     "/proc/self/status", "{root}/a\x00b"]), TEXT)  # fmt: skip
REQUIRED = {  # given half the time, so that the command runs
    "energy": st.tuples(st.just("--start"), TIMES).map(list),
    "report": st.tuples(st.just("--out"), OUTS).map(list),
    "export": st.lists(TEXT, min_size=1, max_size=2).map(lambda ids: ["--out", "{root}/b", *ids]),
    "verify": BUNDLES.map(lambda path: [path]),
    "import": BUNDLES.map(lambda path: [path]),
}


def _missing_data(text: str) -> str:
    """``--data``: never a source that would build a model and run (those take minutes)."""
    return text if text and not os.path.exists(text) else f"/nonexistent/{text}"


BENCHMARK_RUN = {
    "--model": st.one_of(st.sampled_from(sorted(MODELS)), TEXT),
    "--batch-size": SECONDS, "--limit": SECONDS, "--repeats": SECONDS, "--weights": TEXT,
    "--idle": SECONDS, "--min-duration": SECONDS, "--cooldown": SECONDS, "--store": STORES,
    "--run-id": TEXT, "--json": None, "--no-progress": None,
}  # fmt: skip
BENCHMARK_SWEEP = {
    "--model": st.one_of(st.sampled_from(sorted(MODELS)), TEXT), "--batch-sizes": TEXT,
    "--backends": st.one_of(st.sampled_from(["tensorflow", "jax", "torch,onnxruntime"]), TEXT),
    "--precisions": st.one_of(st.sampled_from(["fp32", "fp16,int8"]), TEXT), "--jit": TEXT,
    "--limit": SECONDS, "--weights": TEXT, "--min-duration": SECONDS, "--store": STORES,
    "--sweep-id": TEXT, "--json": None, "--no-progress": None,
}  # fmt: skip

# A campaign's plan: random YAML (the config file's text), odd files, or the example; always
# --dry-run, so that a plan that checks out lists its points and runs none.
CAMPAIGN_PLANS = st.sampled_from(
    [
        "{root}/config.yaml",
        "{root}/non-utf8.yaml",
        "{root}/adir",
        "/nonexistent.yaml",
        "{root}/afile",
        str(Path(__file__).resolve().parent.parent / "examples" / "campaign.yaml"),
    ]
)
BENCHMARK_CAMPAIGN = {
    "--shard": st.one_of(st.sampled_from(["0/3", "2/3", "3/3", "0/0", "1/1"]), TEXT),
    "--store": STORES,
    "--json": None,
    "--no-progress": None,
}


# Each command: its main() and its argument lists. The last options keep a command short:
# a short --duration, --once, a --data that is no dataset. Each draws its options at random.
COMMANDS: dict[str, tuple[Callable[[list[str]], int], st.SearchStrategy[list[str]]]] = {
    "exporters run": (exporters_main, st.builds(
        lambda argv, duration: ["run", *argv, "--duration", _short(duration)],
        options(EXPORTERS_RUN), st.one_of(st.just("0.05"), WORDS),
    )),
    "exporters doctor": (exporters_main, options(EXPORTERS).map(lambda a: ["doctor", *a])),
    **{
        f"scoring {name}": (scoring_main, st.builds(
            lambda a, more, n=name: [n, *a, *more, *(["--once"] if n == "serve" else [])],
            options(table), st.one_of(st.just([]), REQUIRED.get(name, st.just([]))),
        ))  # without --once, serve serves on
        for name, table in SCORING.items()
    },
    "benchmark run": (benchmark_main, st.builds(
        lambda argv, data: ["run", *argv, "--data", _missing_data(data)],
        options(BENCHMARK_RUN), st.one_of(TEXT, st.sampled_from(["", "{root}/afile"])),
    )),
    "benchmark sweep": (benchmark_main, st.builds(
        lambda argv, data: ["sweep", *argv, "--data", _missing_data(data)],
        options(BENCHMARK_SWEEP), st.one_of(TEXT, st.sampled_from(["", "{root}/afile"])),
    )),
    "benchmark campaign": (benchmark_main, st.builds(
        lambda plan, argv: ["campaign", plan, *argv, "--dry-run"],
        CAMPAIGN_PLANS, options(BENCHMARK_CAMPAIGN),
    )),
    "benchmark models": (benchmark_main, options({"--json": None}).map(lambda a: ["models", *a])),
}  # fmt: skip


@pytest.mark.parametrize("command", list(COMMANDS))
@FUZZ
@given(data=st.data(), config=config_texts(), env=ENVS)
def test_any_input_gets_exit_0_or_one_line_and_2(
    sandbox: Sandbox, command: str, data: st.DataObject, config: str, env: dict[str, str]
) -> None:
    main, argvs = COMMANDS[command]
    argv = data.draw(argvs, label="argv")
    (sandbox.root / "config.yaml").write_text(config, encoding="utf-8")
    invoke(main, argv, sandbox, env).check(argv)


@settings(max_examples=300, deadline=None)
@given(doc=config_docs(), env=ENVS)
def test_any_configuration_is_valid_or_one_config_error(
    sandbox: Sandbox, doc: object, env: dict[str, str]
) -> None:
    """Straight to :func:`load_config` and the sources it configures: many more documents than
    the commands can try. A valid configuration builds every source, and each says whether it
    is available."""
    path = sandbox.root / "direct.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    try:
        cfg = load_config(path, env=env)
        checks = list(check_sources(cfg))
    except UsageError as e:
        assert "\n" not in str(e) and len(str(e)) < 500, str(e)
    else:
        assert isinstance(cfg["store"], str) and "://" in cfg["store"]
        assert all(isinstance(c.why, str) for c in checks)


@settings(max_examples=500, deadline=None)
@given(text=TIMES)
def test_a_time_is_one_the_store_can_hold_or_a_usage_error(text: str) -> None:
    try:
        ns = parse_time(text, now_ns=1_800_000_000 * 10**9)
    except UsageError as e:
        assert "\n" not in str(e) and len(str(e)) < 500, str(e)
    else:
        assert 0 <= ns <= MAX_TIME_NS


URL_PORTS = ["", "0", "1", "8086", "08086", "65535", "65536", "١٢", "+1", " 1", "-1", "0x1f"]


@settings(max_examples=300, deadline=None)
@given(
    host=st.sampled_from(["h", "[::1]", "", "u:p@h", "h.example"]),
    port=st.one_of(st.none(), st.sampled_from(URL_PORTS), WORDS),
    path=st.sampled_from(["/db", "/", "", "/a/b", "/db?x=1", "/d%2Fb"]),
)
def test_an_influxdb_url_is_what_it_seems_or_a_usage_error(
    host: str, port: str | None, path: str
) -> None:
    """``influxdb://h:0/db`` once wrote to port 8086: a port is the one given, or an error."""
    url = f"influxdb://{host}{'' if port is None else ':' + port}{path}"
    try:
        endpoint = Endpoint.from_url(url)
    except UsageError as e:
        assert "\n" not in str(e), str(e)
    else:
        assert 1 <= endpoint.port <= 65535
        assert endpoint.port == (8086 if port is None else int(port))
