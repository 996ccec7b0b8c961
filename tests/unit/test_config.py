"""Settings and tiers files: defaults, and errors that name the variable, file, line and reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.errors import ConfigError
from config.settings import load_settings
from config.tiers import DEFAULT_TIERS_FILE, HARD_MAX_OUTPUT_TOKENS, load_tiers

pytestmark = pytest.mark.unit


def test_default_tiers_cover_the_documented_models() -> None:
    tiers = load_tiers(DEFAULT_TIERS_FILE)
    expected = {
        "premium": {"gpt-5", "gpt-4.1", "gpt-4o", "o3"},
        "standard": {"gpt-5-mini", "gpt-4.1-mini", "gpt-4o-mini"},
        "embeddings": {"text-embedding-3-small", "text-embedding-3-large"},
        "images": {"gpt-image-1", "dall-e-3"},
    }
    for name, models in expected.items():
        assert models <= set(tiers.tiers[name].models)
        assert tiers.tiers[name].queue == f"tier.{name}"
    assert tiers.tier_for("unknown-model") is None
    assert tiers.limits_for("gpt-image-1").ipm > 0  # type: ignore[union-attr]


def test_default_chat_models_carry_their_published_sizes() -> None:
    tiers = load_tiers(DEFAULT_TIERS_FILE)
    for model in ("gpt-5", "gpt-4.1", "gpt-4o", "o3", "gpt-5-mini", "gpt-4.1-mini", "gpt-4o-mini"):
        limits = tiers.limits_for(model)
        assert limits is not None and limits.context_window and limits.max_output_tokens, model
        assert limits.output_token_limit == limits.max_output_tokens < limits.context_window
    embedding = tiers.limits_for("text-embedding-3-small")
    assert embedding is not None and embedding.context_window == 8191


def test_a_model_s_output_limit_is_its_smallest_size_and_never_above_the_hard_cap(tmp_path: Path) -> None:
    text = (
        "[tiers.a.models.small]\nrpm = 1\ncontext_window = 4096\nmax_output_tokens = 8192\n"
        "[tiers.a.models.bare]\nrpm = 1\n"
    )
    tiers = load_tiers(_write(tmp_path, text))
    assert tiers.limits_for("small").output_token_limit == 4096  # type: ignore[union-attr]
    assert tiers.limits_for("bare").output_token_limit == HARD_MAX_OUTPUT_TOKENS  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match="max_output_tokens"):
        load_tiers(_write(tmp_path, "[tiers.a.models.m]\nrpm = 1\nmax_output_tokens = 0\n"))


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tiers.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[tiers.a\n", "line 1"),
        ('[tiers.a]\nconcurrency = "x"\n[tiers.a.models.m]\nrpm = 1\n', "line 2"),
        ("[tiers.a.models.m]\nrpm = 0\n", "greater than 0"),
        ("[tiers.a.models.m]\nrpm = 1\n[tiers.b.models.m]\nrpm = 1\n", "is in tiers 'a' and 'b'"),
        ('default_tier = "zzz"\n[tiers.a.models.m]\nrpm = 1\n', "default_tier 'zzz' is not a tier"),
        ("[tiers.a.models.m]\nrpm = 1\nsurprise = 2\n", "surprise"),
    ],
)
def test_malformed_tiers_file_names_file_line_and_reason(tmp_path: Path, text: str, fragment: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_tiers(path)
    assert str(path) in info.value.message and fragment in info.value.message


def test_default_tier_serves_unknown_models(tmp_path: Path) -> None:
    tiers = load_tiers(_write(tmp_path, 'default_tier = "a"\n[tiers.a.models.m]\nrpm = 1\n'))
    assert tiers.tier_for("anything").name == "a"  # type: ignore[union-attr]


def test_settings_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("DATABASE_URL", "REDIS_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL", "BATCHERY_PROVIDERS"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert settings.database_url.startswith("sqlite:///")
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.providers["openai"].base_url == "https://api.openai.com/v1"
    assert not settings.has_provider_key


def test_openai_variables_and_named_providers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-123")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1/")
    monkeypatch.setenv(
        "BATCHERY_PROVIDERS",
        '{"azure": {"base_url": "https://x.example/openai", "api_key": "k", "auth": "api-key",'
        ' "api_version": "2024-10-21"}}',
    )
    settings = load_settings()
    assert settings.providers["openai"].base_url == "http://127.0.0.1:9/v1"
    assert settings.providers["openai"].api_key.get_secret_value() == "sk-test-123"
    assert settings.providers["azure"].auth == "api-key"
    assert "sk-test-123" not in repr(settings)


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("DATABASE_URL", "mysql://x", "DATABASE_URL"),
        ("REDIS_URL", "http://nope", "REDIS_URL"),
        ("BATCHERY_TIERS_FILE", "/no/such/tiers.toml", "BATCHERY_TIERS_FILE"),
        ("BATCHERY_PROVIDERS", "{not json", "BATCHERY_PROVIDERS"),
        ("BATCHERY_PROVIDERS", '{"az": {"base_url": "ftp://x"}}', "BATCHERY_PROVIDERS"),
        ("BATCHERY_MAX_BODY_BYTES", "ten", "BATCHERY_MAX_BODY_BYTES"),
        ("OPENAI_BASE_URL", "api.openai.com", "OPENAI_BASE_URL"),
    ],
)
def test_bad_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, named: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert named in info.value.message


def test_tier_with_unknown_provider_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = _write(tmp_path, '[tiers.a]\nprovider = "nowhere"\n[tiers.a.models.m]\nrpm = 1\n')
    monkeypatch.setenv("BATCHERY_TIERS_FILE", str(path))
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "nowhere" in info.value.message
