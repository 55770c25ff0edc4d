"""Flags of the built-in endpoint types beyond the core's (they arrive in
``config.plugin_options``), checked once into a frozen value."""

from __future__ import annotations

import argparse
import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from aiperf._types import UsageError

if TYPE_CHECKING:
    from aiperf._config import ProfileConfig

IMAGE_FORMATS = ("png", "jpeg")
#: bounds that keep a synthetic image or clip from eating the memory of the prompt pool.
MAX_IMAGE_SIDE = 8192
MAX_AUDIO_SECONDS = 600.0
MAX_PASSAGES = 10_000


def add_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Endpoint types")
    group.add_argument("--rankings-passages-mean", type=int, metavar="N", help="passages per reranking request (default 10)")
    group.add_argument("--rankings-passages-stddev", type=float, metavar="N", help="(default 0)")
    group.add_argument("--payload-template", type=Path, metavar="FILE", help="--endpoint-type template: a JSON request body with {prompt}, {max_tokens} and {model} placeholders")
    group.add_argument("--response-text-path", metavar="PATH", help="--endpoint-type template: where the text is in each response or stream event, e.g. choices.0.delta.content")
    media = parser.add_argument_group("Multimodal inputs (chat, responses, messages; audio: chat)")
    media.add_argument("--image-width-mean", type=int, metavar="PX", help="synthetic images of about this width (with --image-height-mean; default: no images)")
    media.add_argument("--image-width-stddev", type=float, metavar="PX", help="(default 0)")
    media.add_argument("--image-height-mean", type=int, metavar="PX", help="synthetic images of about this height")
    media.add_argument("--image-height-stddev", type=float, metavar="PX", help="(default 0)")
    media.add_argument("--image-format", metavar="FORMAT", help="png or jpeg (default png)")
    media.add_argument("--images-per-request", type=int, metavar="N", help="images with each prompt (default 1 when an image size is given)")
    media.add_argument("--audio-length-mean", type=float, metavar="S", help="a synthetic WAV clip of about S seconds with each prompt, sent as input_audio (chat only; default: none)")


def _number(options: dict[str, Any], name: str, default: float, *, low: float, high: float, whole: bool) -> Any:
    value = options.get(name)
    if value is None:
        return default
    flag = "--" + name.replace("_", "-")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (whole and not float(value).is_integer()):
        raise UsageError(f"{flag}: expected a {'whole ' if whole else ''}number (got {value!r})")
    if not low <= value <= high:
        raise UsageError(f"{flag}: must be between {low:g} and {high:g} (got {value:g})")
    return int(value) if whole else float(value)


@attrs.frozen(kw_only=True)
class ApiOptions:
    rankings_passages_mean: int = 10
    rankings_passages_stddev: float = 0.0
    payload_template: Path | None = None
    response_text_path: str | None = None
    image_width_mean: int = 0
    image_width_stddev: float = 0.0
    image_height_mean: int = 0
    image_height_stddev: float = 0.0
    image_format: str = "png"
    images_per_request: int = 0
    audio_length_mean: float = 0.0

    @property
    def wants_images(self) -> bool:
        return self.images_per_request > 0

    @property
    def wants_audio(self) -> bool:
        return self.audio_length_mean > 0


def from_options(options: dict[str, Any]) -> ApiOptions:
    """The checked options; one line naming the flag for a bad value (exit 2)."""
    return _cached(tuple(sorted((k, v) for k, v in options.items() if k in _FIELDS and v is not None)))


_FIELDS = frozenset(a.name for a in attrs.fields(ApiOptions))


@functools.lru_cache(maxsize=8)
def _cached(items: tuple[tuple[str, Any], ...]) -> ApiOptions:
    options = dict(items)
    num = functools.partial(_number, options)
    width = num("image_width_mean", 0, low=0, high=MAX_IMAGE_SIDE, whole=True)
    height = num("image_height_mean", 0, low=0, high=MAX_IMAGE_SIDE, whole=True)
    if bool(width) != bool(height):
        raise UsageError("--image-width-mean and --image-height-mean: give both (or neither)")
    fmt = str(options.get("image_format", "png")).lower()
    if fmt == "jpg":
        fmt = "jpeg"
    if fmt not in IMAGE_FORMATS:
        raise UsageError(f"--image-format: expected png or jpeg (got {options['image_format']!r})")
    per_request = num("images_per_request", 1 if width else 0, low=0, high=64, whole=True)
    if per_request and not width:
        raise UsageError("--images-per-request: also give --image-width-mean and --image-height-mean")
    path = options.get("response_text_path")
    template = options.get("payload_template")
    return ApiOptions(
        rankings_passages_mean=num("rankings_passages_mean", 10, low=1, high=MAX_PASSAGES, whole=True),
        rankings_passages_stddev=num("rankings_passages_stddev", 0.0, low=0, high=MAX_PASSAGES, whole=False),
        payload_template=Path(template) if template is not None else None,
        response_text_path=str(path) if path is not None else None,
        image_width_mean=width,
        image_width_stddev=num("image_width_stddev", 0.0, low=0, high=MAX_IMAGE_SIDE, whole=False),
        image_height_mean=height,
        image_height_stddev=num("image_height_stddev", 0.0, low=0, high=MAX_IMAGE_SIDE, whole=False),
        image_format=fmt,
        images_per_request=per_request,
        audio_length_mean=num("audio_length_mean", 0.0, low=0, high=MAX_AUDIO_SECONDS, whole=False),
    )


def of(config: ProfileConfig) -> ApiOptions:
    return from_options(config.plugin_options)
