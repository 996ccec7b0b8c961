"""The estimator and the simulator read image sizes with separate code; on real images they agree.

The simulator is the oracle the tests trust, so it shares no parser with ``domain``: a bug in the
estimator's header reader shows up here as a difference, not as two matching wrong answers.
"""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from domain.tokens.image_size import image_size_from_data_uri
from simulator.image_size import size_from_data_url

pytestmark = pytest.mark.unit

SIZES = [(1, 1), (8, 8), (300, 200), (512, 512), (1024, 1536), (2048, 4096), (3999, 17)]


def data_uri(kind: str, size: tuple[int, int]) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, (12, 200, 34)).save(buffer, kind)
    return f"data:image/{kind.lower()};base64," + base64.b64encode(buffer.getvalue()).decode()


@pytest.mark.parametrize("kind", ["PNG", "JPEG", "GIF", "WEBP"])
@pytest.mark.parametrize("size", SIZES)
def test_estimator_and_simulator_read_the_same_size(kind: str, size: tuple[int, int]) -> None:
    uri = data_uri(kind, size)
    assert size_from_data_url(uri) == size
    assert image_size_from_data_uri(uri) == size


def test_both_give_up_on_what_is_not_an_image() -> None:
    uri = "data:image/png;base64," + base64.b64encode(b"plain text, not an image").decode()
    assert size_from_data_url(uri) is None
    assert image_size_from_data_uri(uri) is None
