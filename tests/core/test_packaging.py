"""The package under test is this project's aiperf, never the unrelated one on PyPI."""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
#: plugins that ``aiperf[all]`` leaves out (docs/scale.md says why for Ray).
NOT_IN_ALL = {"ray"}


class TestPackaging:
    def test_imported_aiperf_is_this_project(self) -> None:
        """The installed distribution is ours: same version, same description, our hookspecs."""
        import aiperf
        from aiperf import hookspecs

        project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
        dist = metadata.distribution("aiperf")
        assert project["version"] == aiperf.__version__ == dist.version
        assert project["description"] == dist.metadata["Summary"]
        assert "aiperf_live_sinks" in vars(hookspecs)

    def test_extras_point_at_the_plugins(self) -> None:
        """Each extra names the plugin distribution living under plugins/."""
        project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
        extras = project["optional-dependencies"]
        names = sorted(p.name.removeprefix("aiperf-") for p in (REPO / "plugins").glob("aiperf-*"))
        assert {"otel", "mlflow", "gpu", "plot", "server-metrics"} <= set(names)
        for name in names:
            assert f"aiperf-{name}" == extras[name][0]
            plugin = tomllib.loads((REPO / "plugins" / f"aiperf-{name}" / "pyproject.toml").read_text())
            assert f"aiperf-{name}" == plugin["project"]["name"]
            module = name.replace("-", "_")
            assert f"aiperf_{module}.plugin" == plugin["project"]["entry-points"]["aiperf"][module]
        plugins = [e for e in extras["all"] if e.startswith("aiperf-")]
        # Ray is left out of "all" on purpose (a large install only a cluster run needs).
        assert [f"aiperf-{n}" for n in names if n not in NOT_IN_ALL] == sorted(plugins)

    def test_mlflow_extra_installs_the_full_mlflow(self) -> None:
        """`pip install "aiperf[mlflow]"` then `mlflow ui` works: the extra brings the full
        mlflow (server, UI, sqlite store), not only the client the plugin needs."""
        extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
        for extra in ("mlflow", "all"):
            assert any(e.split(">")[0].split("=")[0].strip() == "mlflow" for e in extras[extra]), extra
