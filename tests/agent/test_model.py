"""The embedded default model's cache and the errors for unusable model folders."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from agent.model import ModelLoadError, convert_gguf, default_model_path, load_model, resolve_model_path


def test_default_model_is_a_cached_hf_folder(smollm_path):
    assert (smollm_path / "config.json").is_file()
    weights = next(smollm_path.glob("*.safetensors"))
    stamp = weights.stat().st_mtime_ns
    assert default_model_path() == smollm_path
    assert weights.stat().st_mtime_ns == stamp  # not converted again
    config = json.loads((smollm_path / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["model_type"] == "llama"
    assert not list(smollm_path.parent.glob(f".{smollm_path.name}.tmp-*"))


def test_none_resolves_to_default(smollm_path):
    assert resolve_model_path(None) == smollm_path


def test_missing_folder_is_a_clear_error(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(ModelLoadError, match="not a local folder") as err:
        load_model(missing)
    assert str(missing) in str(err.value)


def test_folder_without_config_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="no config.json") as err:
        load_model(tmp_path)
    assert str(tmp_path) in str(err.value)


def test_broken_config_names_path_and_reason(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "llama", "hidden_size": ')
    with pytest.raises(ModelLoadError, match="cannot load a causal LM from") as err:
        load_model(tmp_path)
    assert str(tmp_path) in str(err.value)


def test_config_without_weights_is_a_clear_error(tmp_path, tiny_path):
    (tmp_path / "config.json").write_text((tiny_path / "config.json").read_text())
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (tmp_path / name).write_text((tiny_path / name).read_text())
    with pytest.raises(ModelLoadError) as err:
        load_model(tmp_path)
    assert str(tmp_path) in str(err.value)


def test_failed_conversion_leaves_no_cache_behind(tmp_path):
    bogus = tmp_path / "src" / "broken.gguf"
    bogus.parent.mkdir()
    bogus.write_bytes(b"GGUF but not really")
    target = tmp_path / "models" / "broken"
    with pytest.raises(ModelLoadError) as err:
        convert_gguf(bogus, target)
    assert str(err.value).startswith(f"cannot convert {bogus} into {target}: ") and "\n" not in str(err.value)
    assert not target.exists()
    assert list((tmp_path / "models").iterdir()) == []


@pytest.mark.parametrize("command", [["convert-model"], ["play", "--episodes", "1"]])
def test_a_failed_first_conversion_of_the_embedded_model_is_one_line(tmp_path, monkeypatch, command):
    from oel.cli import command as oel

    bogus = tmp_path / "broken.gguf"
    bogus.write_bytes(b"GGUF but not really")
    monkeypatch.setattr("agent.model._gguf_path", lambda: bogus)
    cache = tmp_path / "cache"
    args = [*command, "--db", f"sqlite:///{tmp_path / 'oel.db'}"] if command[0] == "play" else command
    result = CliRunner().invoke(oel(), args, env={"OEL_CACHE_DIR": str(cache)})
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.output.strip().splitlines()
    target = cache / "models" / "SmolLM2-135M-Instruct"
    assert (
        lines[-1].startswith(f"error: cannot convert {bogus} into {target}: ")
        and "Traceback" not in result.output
    )
    assert list((cache / "models").iterdir()) == []  # nothing a later run could take for the model


def test_an_unwritable_model_cache_is_one_line(tmp_path, monkeypatch):
    (tmp_path / "a-file").write_text("not a folder")
    monkeypatch.setenv("OEL_CACHE_DIR", str(tmp_path / "a-file" / "cache"))
    with pytest.raises(
        ModelLoadError, match=r"cannot prepare the embedded model in the cache .*a-file"
    ) as err:
        default_model_path()
    assert "\n" not in str(err.value)
