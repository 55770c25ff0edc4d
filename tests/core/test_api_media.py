"""Synthetic images and audio for multimodal prompts."""

from __future__ import annotations

import base64
import io
import json
import random
import statistics
import wave

import pytest
from aiperf import Prompt, UsageError
from aiperf._apis import media, messages, options, responses
from aiperf._config import ProfileConfig
from aiperf._endpoints import chat_payload
from PIL import Image  # a dependency of aiperf-plot's matplotlib, used here as the decoder


def _config(endpoint_type: str = "chat", **plugin_options) -> ProfileConfig:
    return ProfileConfig(model="m", endpoint_type=endpoint_type, random_seed=5, plugin_options=plugin_options)


class TestEncoders:
    @pytest.mark.parametrize(("width", "height"), [(1, 1), (8, 8), (37, 21), (200, 120)])
    def test_png_and_jpeg_decode_to_their_size(self, width, height) -> None:
        """Both formats decode, with another library, to the size asked for."""
        for encode in (media.png, media.jpeg):
            image = Image.open(io.BytesIO(encode(width, height, random.Random(1))))
            image.load()
            assert (width, height) == image.size
            assert "RGB" == image.mode

    def test_jpeg_blocks_keep_their_colour(self) -> None:
        """A flat block decodes to the colour drawn for it (within JPEG's rounding)."""
        rng = random.Random(9)
        expected = media._block_colours(16, 8, random.Random(9))
        image = Image.open(io.BytesIO(media.jpeg(16, 8, rng))).convert("RGB")
        for block, colour in enumerate(expected):
            seen = image.getpixel((block * 8 + 3, 3))
            assert all(abs(a - b) <= 3 for a, b in zip(seen, colour, strict=True)), (seen, colour)

    def test_wav_length(self) -> None:
        """A clip of S seconds has S * 16000 frames of 16-bit mono."""
        clip = wave.open(io.BytesIO(media.wav(0.25, random.Random(1))))
        assert (1, 2, 16000, 4000) == (clip.getnchannels(), clip.getsampwidth(), clip.getframerate(), clip.getnframes())


class TestAttach:
    def test_images_and_audio_attached_seeded_and_sized(self) -> None:
        """Each prompt gets its images and clip; their sizes are recorded; same seed, same bytes."""
        config = _config(image_width_mean=32, image_height_mean=16, images_per_request=2, image_format="jpeg", audio_length_mean=0.1)
        prompts = [Prompt(text=f"p{i}", input_tokens=1) for i in range(3)]
        first = media.attach(prompts, config)
        assert first == media.attach(prompts, config)
        for prompt in first:
            assert 2 == len(prompt.images)
            sizes = [len(base64.b64decode(url.split(",", 1)[1])) for url in prompt.images]
            assert all(url.startswith("data:image/jpeg;base64,") for url in prompt.images)
            assert float(sum(sizes)) == prompt.input_values["input_image_bytes"]
            assert 2.0 == prompt.input_values["input_image_count"]
            assert float(len(base64.b64decode(prompt.audio[0][0]))) == prompt.input_values["input_audio_bytes"]

    def test_chat_payload_has_image_and_audio_parts(self) -> None:
        """Chat sends image_url and input_audio parts after the text."""
        prompt = Prompt(text="hi", input_tokens=1, images=("data:image/png;base64,AA",), audio=(("UklG", "wav"),))
        content = chat_payload(prompt, _config())["messages"][0]["content"]
        assert [
            {"type": "text", "text": "hi"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}},
            {"type": "input_audio", "input_audio": {"data": "UklG", "format": "wav"}},
        ] == content

    def _sizes(self, seed: int, **flags) -> list[tuple[int, int]]:
        config = ProfileConfig(model="m", endpoint_type="chat", random_seed=seed, plugin_options=flags)
        prompts = media.attach([Prompt(text=f"p{i}", input_tokens=1) for i in range(40)], config)
        return [Image.open(io.BytesIO(base64.b64decode(p.images[0].split(",", 1)[1]))).size for p in prompts]

    def test_sizes_vary_with_stddev_and_are_seeded(self) -> None:
        """With -stddev each image's width and height are drawn around the means (decoded by
        another library); the same seed draws the same sizes, another seed others."""
        flags = {"image_width_mean": 64, "image_width_stddev": 16.0, "image_height_mean": 32, "image_height_stddev": 8.0}
        sizes = self._sizes(3, **flags)
        widths, heights = [w for w, _ in sizes], [h for _, h in sizes]
        assert len(set(widths)) > 10 and len(set(heights)) > 5
        assert abs(statistics.mean(widths) - 64) < 9 and abs(statistics.mean(heights) - 32) < 5
        assert 8 < statistics.stdev(widths) < 26 and 4 < statistics.stdev(heights) < 13
        assert sizes == self._sizes(3, **flags)
        assert sizes != self._sizes(4, **flags)

    def test_no_stddev_every_image_the_mean_size(self) -> None:
        assert {(64, 32)} == set(self._sizes(3, image_width_mean=64, image_height_mean=32))

    def test_no_flags_no_change(self) -> None:
        prompts = [Prompt(text="p", input_tokens=1)]
        assert prompts == media.attach(prompts, _config())

    def test_other_endpoint_type_is_usage_error(self) -> None:
        """Images for an API that cannot carry them: one line."""
        with pytest.raises(UsageError, match="sends no images"):
            media.attach([Prompt(text="p", input_tokens=1)], _config("completions", audio_length_mean=1.0))

    @pytest.mark.parametrize(
        ("given", "match"),
        [
            ({"image_width_mean": 10}, "give both"),
            ({"image_width_mean": 10, "image_height_mean": 10, "image_format": "gif"}, "png or jpeg"),
            ({"images_per_request": 2}, "--image-width-mean"),
            ({"audio_length_mean": -1.0}, "--audio-length-mean"),
        ],
    )
    def test_bad_flags(self, given, match) -> None:
        with pytest.raises(UsageError, match=match):
            options.from_options(given)


class TestPerApi:
    """Each API gets its media in its own shape, and no media it cannot take."""

    @pytest.mark.parametrize(
        ("endpoint_type", "why"),
        [
            ("responses", "--audio-length-mean: the Responses API takes no audio input"),
            ("messages", "--audio-length-mean: the Messages API takes no audio input"),
        ],
    )
    def test_audio_refused_where_the_api_takes_none(self, endpoint_type, why) -> None:
        """Responses (input_text/input_image/input_file) and Messages (text/image/document
        blocks) have no audio input: one line naming the flag and the type that has one."""
        with pytest.raises(UsageError) as excinfo:
            media.attach([Prompt(text="p", input_tokens=1)], _config(endpoint_type, audio_length_mean=0.1))
        message = str(excinfo.value)
        assert message.startswith(why)
        assert message.endswith("use --endpoint-type chat for audio")
        assert "\n" not in message

    def test_audio_from_a_file_refused_for_responses(self) -> None:
        """Audio a dataset brought is refused the same way, naming the input file."""
        prompt = Prompt(text="p", input_tokens=1, audio=(("UklG", "wav"),))
        with pytest.raises(UsageError, match=r'^--input-file \("image"/"audio"\): the Responses API takes no audio'):
            media.attach([prompt], _config("responses"))

    def test_responses_payload_has_input_image_parts_and_no_audio(self) -> None:
        """Responses: one user message of input_text then input_image parts (image_url a string)."""
        prompts = media.attach([Prompt(text="hi", input_tokens=1)], _config("responses", image_width_mean=8, image_height_mean=8, images_per_request=2))
        body = responses.payload(prompts[0], _config("responses"))
        (message,) = body["input"]
        assert "user" == message["role"]
        assert ["input_text", "input_image", "input_image"] == [part["type"] for part in message["content"]]
        assert all(part["image_url"].startswith("data:image/png;base64,") for part in message["content"][1:])
        assert "input_audio" not in json.dumps(body)

    def test_messages_image_is_anthropic_base64_block(self) -> None:
        """Messages: a synthetic JPEG becomes {"type": "image", "source": {"type": "base64",
        "media_type": "image/jpeg", "data": ...}} whose data is the JPEG itself."""
        config = _config("messages", image_width_mean=16, image_height_mean=8, image_format="jpeg")
        (prompt,) = media.attach([Prompt(text="hi", input_tokens=1)], config)
        content = messages.payload(prompt, config)["messages"][0]["content"]
        assert {"type": "text", "text": "hi"} == content[0]
        block = content[1]
        assert ("image", "base64", "image/jpeg") == (block["type"], block["source"]["type"], block["source"]["media_type"])
        assert {"type", "source"} == set(block) and {"type", "media_type", "data"} == set(block["source"])
        assert (16, 8) == Image.open(io.BytesIO(base64.b64decode(block["source"]["data"]))).size

    def test_messages_image_url_is_url_source(self) -> None:
        """An http(s) image (from the input file) goes as a url source."""
        prompt = Prompt(text="hi", input_tokens=1, images=("https://example.com/cat.png",))
        content = messages.payload(prompt, _config("messages"))["messages"][0]["content"]
        assert {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}} == content[1]

    def test_file_media_kept_and_synthetic_added(self) -> None:
        """Synthetic images join those a dataset brought; their sizes add up."""
        prompt = Prompt(text="hi", input_tokens=1, images=("https://example.com/a.png",), input_values={"input_image_count": 1.0})
        (out,) = media.attach([prompt], _config(image_width_mean=8, image_height_mean=8))
        assert "https://example.com/a.png" == out.images[0] and 2 == len(out.images)
        assert 2.0 == out.input_values["input_image_count"]
