"""Settings from environment variables and `oml serve` flags."""

import argparse

import pytest

from server.serve_cli import register, settings_from_args
from server.settings import Settings


def parse(argv):
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["serve", *argv])


def test_environment_variables_fill_settings():
    settings = Settings.from_env({"OML_DATA_DIR": "/tmp/d", "OML_MAX_BATCH_SIZE": "4", "OML_MAX_WAIT_MS": "2.5",
                                  "OML_API_KEY": "k", "OML_PROTECT_SEARCH": "yes", "OML_MAX_K": "7"})
    assert str(settings.data_dir) == "/tmp/d" and settings.max_batch_size == 4 and settings.max_wait_ms == 2.5
    assert settings.api_key == "k" and settings.protect_search is True and settings.max_k == 7


def test_flags_override_environment(monkeypatch):
    monkeypatch.setenv("OML_MAX_BATCH_SIZE", "4")
    monkeypatch.setenv("OML_PORT", "9000")
    settings = settings_from_args(parse(["--max-batch-size", "1", "--models-dir", "m", "--api-key", "secret"]))
    assert settings.max_batch_size == 1 and settings.port == 9000 and str(settings.models_dir) == "m"
    assert settings.api_key == "secret"


@pytest.mark.parametrize("env, words", [
    ({"OML_MAX_BATCH_SIZE": "lots"}, "OML_MAX_BATCH_SIZE"),
    ({"OML_MAX_K": "0"}, "max_k must be >= 1"),
    ({"OML_PROTECT_SEARCH": "maybe"}, "not a boolean"),
    ({"OML_MAX_WAIT_MS": "-1"}, "max_wait_ms"),
])
def test_bad_values_are_named(env, words):
    with pytest.raises(ValueError, match=words):
        Settings.from_env(env)


def test_empty_api_key_means_no_key():
    assert Settings.from_env({"OML_API_KEY": ""}).api_key is None


def test_the_server_turns_onnx_runtime_thread_spinning_off_unless_asked(tmp_path, monkeypatch):
    from oml.inference import onnx_runtime
    from server.services import build_services

    monkeypatch.setattr(onnx_runtime, "_THREAD_SPINNING", {"enabled": True})
    build_services(Settings(data_dir=tmp_path / "d", models_dir=tmp_path / "m", bootstrap_model=None))
    assert onnx_runtime._session_options(2).get_session_config_entry("session.intra_op.allow_spinning") == "0"
    build_services(Settings(data_dir=tmp_path / "d", models_dir=tmp_path / "m", bootstrap_model=None,
                            ort_spinning=True))
    with pytest.raises(Exception):  # no entry: ONNX Runtime's default (spinning) applies
        onnx_runtime._session_options(2).get_session_config_entry("session.intra_op.allow_spinning")
