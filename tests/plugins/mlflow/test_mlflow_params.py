"""Params and tags: the configuration and the run's identity, with no secret in them."""

from __future__ import annotations

from pathlib import Path

from aiperf_mlflow.params import flatten_params, run_params, run_tags
from support.mlflow_values import CANARY, make_config, make_run


class TestParams:
    def test_run_params_hold_no_secret(self, tmp_path: Path) -> None:
        """API key, auth header and URL password are planted; none reaches a param."""
        config = make_config(
            plugin_options={"mlflow_tracking_uri": f"http://u:{CANARY}@127.0.0.1:5000"}
        )
        params = run_params(make_run(tmp_path, config))
        assert params, "the configuration should give params"
        leaked = {k: v for k, v in params.items() if CANARY in v or CANARY in k}
        assert {} == leaked
        assert "***" == params["api_key"]
        assert "http://127.0.0.1:8000" == params["url"]
        assert "http://127.0.0.1:5000" == params["plugin_options.mlflow_tracking_uri"]

    def test_run_params_keep_the_benchmark_settings(self, tmp_path: Path) -> None:
        """What a sweep compares (model, concurrency, streaming) is there as text."""
        params = run_params(make_run(tmp_path))
        assert ("my-model", "4", "True") == (
            params["model"],
            params["concurrency"],
            params["streaming"],
        )

    def test_flatten_params_nests_lists_and_drops_none(self) -> None:
        """Tables become dotted keys, lists JSON, None nothing; long values are cut to MLflow's limit."""
        got = flatten_params(
            {"a": {"b": 1, "c": None}, "l": [1, "x"], "n": None, "long": "v" * 7000}
        )
        assert {"a.b": "1", "l": '[1, "x"]', "long": "v" * 6000} == got

    def test_params_strip_userinfo_everywhere(self) -> None:
        """Every URL in a value loses user:password@."""
        text = "API request to http://u:p@h:5000/api failed; retry https://x@y/z"
        expected = "API request to http://h:5000/api failed; retry https://y/z"
        assert {"note": expected} == flatten_params({"note": text})


class TestTags:
    def test_run_tags_identity_and_user_tags(self, tmp_path: Path) -> None:
        """Provider, model, endpoint type, load setting and version, plus the user's own."""
        run = make_run(tmp_path)
        tags = run_tags(run, (("team", "ml"),))
        expected = {
            "gen_ai.provider.name": "vllm",
            "gen_ai.request.model": "my-model",
            "aiperf.endpoint_type": "chat",
            "aiperf.load_setting": "concurrency4",
            "aiperf.version": "0.1.0",
            "team": "ml",
        }
        assert expected == {k: tags[k] for k in expected}

    def test_run_tags_user_tag_overrides(self, tmp_path: Path) -> None:
        """The user's tag wins over ours when they name the same key."""
        tags = run_tags(make_run(tmp_path), (("gen_ai.provider.name", "mine"),))
        assert "mine" == tags["gen_ai.provider.name"]
