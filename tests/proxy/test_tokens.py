"""Prompt estimates: images by OpenAI's tile rule, tool definitions and tool calls counted."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from creditdash.proxy import tokens


def data_url(width: int, height: int, fmt: str, *, exif: bytes = b"") -> str:
    buffer = io.BytesIO()
    image = Image.new("RGB", (width, height), (200, 30, 30))
    if exif:
        image.save(buffer, format=fmt, exif=exif)
    else:
        image.save(buffer, format=fmt)
    mime = {"PNG": "png", "JPEG": "jpeg", "GIF": "gif", "WEBP": "webp"}[fmt]
    return f"data:image/{mime};base64," + base64.b64encode(buffer.getvalue()).decode()


@pytest.mark.parametrize(
    ("width", "height", "expected"),
    [
        (512, 512, 85 + 170),  # one tile
        (1024, 1024, 85 + 170 * 4),  # scaled to 768 x 768: four tiles
        (2048, 4096, 85 + 170 * 6),  # to 1024 x 2048, then 768 x 1536: 2 x 3 tiles
        (100, 3000, 85 + 170 * 4),  # to 68 x 2048; a short side is never raised: 1 x 4
        (4000, 4000, 85 + 170 * 4),
    ],
)
def test_the_tile_rule(width: int, height: int, expected: int) -> None:
    assert tokens.image_tile_tokens(width, height) == expected


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP"])
def test_the_size_is_read_from_each_format(fmt: str) -> None:
    assert tokens.image_size(data_url(640, 480, fmt)) == (640, 480)


def test_a_jpeg_size_behind_its_metadata_is_found() -> None:
    exif = Image.Exif()
    exif[0x010E] = "x" * 20_000  # ImageDescription: a 20 kB APP1 segment before the frame
    assert tokens.image_size(data_url(1500, 700, "JPEG", exif=exif.tobytes())) == (1500, 700)


def test_detail_low_urls_and_unreadable_data() -> None:
    big = data_url(2000, 2000, "PNG")
    high = {"type": "image_url", "image_url": {"url": big, "detail": "high"}}
    low = {"type": "image_url", "image_url": {"url": big, "detail": "low"}}
    remote = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    broken = {"type": "image_url", "image_url": {"url": "data:image/png;base64,!!!!"}}
    responses_style = {"type": "input_image", "image_url": big, "detail": "low"}
    assert tokens.image_tokens(high) == 85 + 170 * 4
    assert tokens.image_tokens(low) == tokens.image_tokens(responses_style) == 85
    assert tokens.image_tokens(remote) == tokens.image_tokens(broken) == 85 + 170 * 4


def test_prompt_estimates_count_images_tools_and_tool_calls() -> None:
    text_only = {"messages": [{"role": "user", "content": [{"type": "text", "text": "Look"}]}]}
    base = tokens.prompt_tokens("chat", text_only)
    image = {"type": "image_url", "image_url": {"url": data_url(512, 512, "PNG")}}
    with_image = {"messages": [{"role": "user", "content": [{"type": "text", "text": "Look"},
                                                            image]}]}  # fmt: skip
    assert tokens.prompt_tokens("chat", with_image) == base + 255
    # Never more than the model's per-part allowance, which is what the hold covered.
    assert tokens.prompt_tokens("chat", with_image, media_cap=100) == base + 100
    # Audio and files are estimated at the allowance.
    audio = {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}
    with_audio = {"messages": [{"role": "user", "content": [audio]}]}
    assert tokens.prompt_tokens("chat", with_audio, media_cap=700) == 700 + 4

    tools = [{"type": "function", "function": {"name": "get_weather", "description": "x" * 400,
                                               "parameters": {"type": "object"}}}]  # fmt: skip
    with_tools = {**text_only, "tools": tools}
    assert tokens.prompt_tokens("chat", with_tools) >= base + 100 + tokens.PER_TOOL_OVERHEAD
    call = {
        "id": "c1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "' + "P" * 400 + '"}'},
    }
    turn = {"messages": [*text_only["messages"],
                         {"role": "assistant", "content": None, "tool_calls": [call]}]}  # fmt: skip
    assert tokens.prompt_tokens("chat", turn) >= base + 100
