"""Image tokens: vision tiles and patches per model, and image sizes read from data URI headers.

The images are real files built byte by byte (``tests.support.images``); nothing touches the network.
"""

from __future__ import annotations

import base64
from urllib.parse import quote_from_bytes

import pytest

from domain.tokens import image_size
from domain.tokens.image_size import image_size_from_bytes, image_size_from_data_uri
from domain.tokens.images import (
    DEFAULT_VISION_RULE,
    PatchRule,
    TileRule,
    image_input_tokens,
    vision_rule,
)
from tests.support.images import data_uri, gif, jpeg, png, webp_extended, webp_lossless, webp_lossy

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("offline")]  # counted with no network


# --- vision tiles ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "size", "detail", "expected"),
    [
        ("gpt-4o", (1024, 1024), "high", 765),
        ("gpt-4o", (2048, 4096), "high", 1105),
        ("gpt-4o", (4096, 8192), "low", 85),
        ("gpt-4o", (1024, 1024), "auto", 765),
        ("gpt-4o", (128, 64), "high", 255),  # small images are not scaled up
        ("gpt-4o", (768, 2048), "high", 85 + 170 * 8),
        ("gpt-4o", (70_000, 1), "high", 85 + 170 * 4),
        ("gpt-4.1", (1024, 1024), "high", 765),
        ("gpt-5", (2048, 4096), "high", 1105),
        ("gpt-4o-mini", (1024, 1024), "low", 2833),
        ("gpt-4o-mini", (1024, 1024), "high", 2833 + 5667 * 4),
        ("gpt-4o-mini-2024-07-18", (2048, 4096), "high", 2833 + 5667 * 6),
        ("o3", (1024, 1024), "high", 75 + 150 * 4),
        ("gpt-4.1-mini", (1024, 1024), "high", 1659),  # 1024 patches x 1.62
        ("gpt-4.1-mini", (1024, 1024), "low", 1659),  # detail does not change patch models
        ("gpt-4.1-nano", (1800, 2400), "high", 3572),  # 1452 patches x 2.46
        ("some-local-llava", (1024, 1024), "high", 765),
    ],
)
def test_vision_tokens_for_known_sizes(model: str, size: tuple[int, int], detail: str, expected: int) -> None:
    assert vision_rule(model).tokens(size, detail) == expected


def test_patch_rule_matches_the_documented_example() -> None:
    assert PatchRule(multiplier=1.0).tokens((1800, 2400), "high") == 1452
    assert PatchRule(multiplier=1.0).tokens((1024, 1024), "high") == 1024
    assert PatchRule(multiplier=1.0).tokens((1, 100_000), "high") == 1536


@pytest.mark.parametrize(
    ("model", "worst"),
    [
        ("gpt-4o", 85 + 170 * 8),
        ("gpt-4o-mini", 2833 + 5667 * 8),
        ("gpt-4.1-mini", 2489),
        ("ft:gpt-4o-2024-08-06:acme::abc", 1445),
        ("openai/gpt-4o", 1445),
        ("unknown-model", 1445),
    ],
)
def test_urls_are_charged_the_worst_case(model: str, worst: int) -> None:
    assert image_input_tokens(model, "https://example.com/cat.png", "high") == worst
    assert image_input_tokens(model, "http://example.com/cat.png", None) == worst
    assert image_input_tokens(model, "file-abc123", "auto") == worst
    assert image_input_tokens(model, None, "auto") == worst


def test_low_detail_url_costs_the_base_figure() -> None:
    assert image_input_tokens("gpt-4o", "https://example.com/cat.png", "low") == 85
    assert image_input_tokens("gpt-4o-mini", "https://example.com/cat.png", " LOW ") == 2833


def test_worst_case_is_the_maximum_over_sizes() -> None:
    rule = TileRule(base=85, tile=170)
    sizes = [(w, h) for w in range(64, 5000, 97) for h in range(64, 5000, 131)]
    assert max(rule.tokens(size, "high") for size in sizes) <= rule.worst_case()
    assert DEFAULT_VISION_RULE == rule


# --- image sizes from data URIs --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "size"),
    [
        (png(3, 2), (3, 2)),
        (png(2048, 4096), (2048, 4096)),
        (gif(640, 480), (640, 480)),
        (jpeg(1024, 768), (1024, 768)),
        (jpeg(300, 5000, sof=0xC2), (300, 5000)),  # progressive
        (jpeg(800, 600, padding=1), (800, 600)),  # a 60 KB EXIF segment first
        (webp_lossy(1000, 700), (1000, 700)),
        (webp_lossless(16383, 1), (16383, 1)),
        (webp_extended(16777216, 3), (16777216, 3)),
    ],
)
def test_image_size_from_header(image: bytes, size: tuple[int, int]) -> None:
    assert image_size_from_bytes(image) == size
    assert image_size_from_data_uri(data_uri(image)) == size


@pytest.mark.parametrize(
    "uri",
    [
        "data:image/png;base64,",
        "data:image/png;base64,!!!!",
        "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 8).decode(),
        "data:image/png;base64," + base64.b64encode(png(0, 5)).decode(),
        "data:image/bmp;base64," + base64.b64encode(b"BM" + b"\x00" * 64).decode(),
        "data:image/jpeg;base64," + base64.b64encode(b"\xff\xd8\xff\xd9").decode(),
        "data:image/jpeg;base64," + base64.b64encode(b"\xff\xd8\x00\x00").decode(),
        "data:image/jpeg;base64," + base64.b64encode(jpeg(10, 10)[:40]).decode(),
        "data:image/webp;base64," + base64.b64encode(b"RIFF\x00\x00\x00\x00WEBPVP8 ").decode(),
        "data:image/png" + "x" * 5000 + ";base64,AAAA",
        "data:no-comma",
        "https://example.com/image.png",
        "",
    ],
)
def test_unreadable_data_uris_give_no_size(uri: str) -> None:
    assert image_size_from_data_uri(uri) is None


@pytest.mark.parametrize(
    "uri",
    [
        "data:image/png;base64,\n" + "\n".join(base64.encodebytes(png(5, 7)).decode().split()),
        "data:image/png;base64," + base64.urlsafe_b64encode(png(5, 7)).decode().rstrip("="),
        "DATA:image/png;BASE64," + base64.b64encode(png(5, 7)).decode(),
        "data:image/png," + quote_from_bytes(png(5, 7)),
    ],
)
def test_data_uri_variants(uri: str) -> None:
    assert image_size_from_data_uri(uri) == (5, 7)


def test_only_a_bounded_prefix_is_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    decoded: list[int] = []
    real = base64.b64decode

    def spy(data: bytes) -> bytes:
        decoded.append(len(data))
        return real(data)

    monkeypatch.setattr(base64, "b64decode", spy)
    big = png(1024, 1024) + b"\x00" * 20_000_000
    assert image_size_from_data_uri(data_uri(big)) == (1024, 1024)
    assert decoded
    assert max(decoded) <= image_size.MAX_PREFIX_CHARS + 4


def test_jpeg_frame_beyond_the_prefix_is_charged_the_worst_case() -> None:
    uri = data_uri(jpeg(512, 512, padding=2), "image/jpeg")
    assert image_size_from_data_uri(uri) is None
    assert image_input_tokens("gpt-4o", uri, "high") == 1445


@pytest.mark.parametrize(
    ("image", "expected"),
    [(png(1024, 1024), 765), (png(2048, 4096), 1105), (gif(100, 100), 255), (webp_lossy(1536, 1024), 1105)],
)
def test_data_uri_images_are_measured(image: bytes, expected: int) -> None:
    assert image_input_tokens("gpt-4o", data_uri(image), "high") == expected
    assert image_input_tokens("gpt-4o", data_uri(image), "low") == 85
