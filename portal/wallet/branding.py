"""A wallet card's colours and images from the program's brand colour.

The background is the brand colour; the text is white or black, whichever contrasts more
(WCAG 2 contrast ratio), and the labels a softer shade of the text that still reaches 4.5:1.
Images: files an operator puts in WALLET_APPLE_IMAGES_DIR (per program in a sub-folder named
after its slug, or for every program at its top) win; otherwise simple PNGs are drawn here in
the program's colours with its initial. The program's `logo_url` is never fetched while a
pass is built (a remote address would make every download wait on, and trust, another host).
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from PIL import Image, ImageDraw, ImageFont

RGB = tuple[int, int, int]
WHITE: RGB = (255, 255, 255)
BLACK: RGB = (0, 0, 0)
# Label colour: this share of the background mixed into the text colour, if still readable.
LABEL_MIX = 0.3
MIN_LABEL_CONTRAST = 4.5


def hex_to_rgb(value: str) -> RGB:
    value = value.lstrip("#")
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)


def rgb_to_hex(rgb: RGB) -> str:
    return "#{:02X}{:02X}{:02X}".format(*rgb)


def relative_luminance(rgb: RGB) -> float:
    def channel(c: int) -> float:
        s = c / 255
        return s / 12.92 if s <= 0.04045 else ((s + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(a: RGB, b: RGB) -> float:
    la, lb = sorted((relative_luminance(a), relative_luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


@dataclass(frozen=True)
class PassColours:
    background: RGB
    foreground: RGB
    label: RGB

    @staticmethod
    def css(rgb: RGB) -> str:
        """Apple's pass.json colour syntax."""
        return "rgb({}, {}, {})".format(*rgb)


@functools.lru_cache(maxsize=256)
def pass_colours(brand_color: str) -> PassColours:
    background = hex_to_rgb(brand_color)
    foreground = WHITE if contrast_ratio(WHITE, background) >= contrast_ratio(BLACK, background) else BLACK
    mixed = tuple(round(f * (1 - LABEL_MIX) + b * LABEL_MIX) for f, b in zip(foreground, background, strict=True))
    label = mixed if contrast_ratio(mixed, background) >= MIN_LABEL_CONTRAST else foreground
    return PassColours(background=background, foreground=foreground, label=label)  # type: ignore[arg-type]


# Apple's image slots for a store card: name -> (width, height) in pixels. Icons are square;
# the logo sits at the top left beside logoText (at most 160 x 50 points).
APPLE_IMAGES: dict[str, tuple[int, int]] = {
    "icon.png": (29, 29),
    "icon@2x.png": (58, 58),
    "icon@3x.png": (87, 87),
    "logo.png": (50, 50),
    "logo@2x.png": (100, 100),
    "logo@3x.png": (150, 150),
}


def _initial(name: str) -> str:
    for char in name:
        if char.isalnum():
            return char.upper()
    return ""


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def _draw_initial(draw: ImageDraw.ImageDraw, size: tuple[int, int], initial: str, colour: RGB) -> None:
    if not initial:
        return
    font = ImageFont.load_default(size=max(8, int(size[1] * 0.6)))
    draw.text((size[0] / 2, size[1] / 2), initial, fill=colour, font=font, anchor="mm")


@functools.lru_cache(maxsize=256)
def generated_icon(brand_color: str, name: str, size: int) -> bytes:
    """A square in the brand colour with the program's initial (the pass's notification icon)."""
    colours = pass_colours(brand_color)
    image = Image.new("RGB", (size, size), colours.background)
    _draw_initial(ImageDraw.Draw(image), (size, size), _initial(name), colours.foreground)
    return _png(image)


@functools.lru_cache(maxsize=256)
def generated_logo(brand_color: str, name: str, size: int) -> bytes:
    """A disc in the text colour carrying the initial in the brand colour, on a transparent
    background: it sits on the card beside the program's name."""
    colours = pass_colours(brand_color)
    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.ellipse((0, 0, size - 1, size - 1), fill=colours.foreground)
    _draw_initial(draw, (size, size), _initial(name), colours.background)
    return _png(image)


def program_logo_png(program, size: int = 660) -> bytes:
    """The generated logo of a `loyalty.Program` at `size` pixels: what Google Wallet shows
    when the program has no logo address of its own (it asks for a square logo of at least
    660 px). The portal serves it (`google.program_logo_url`)."""
    return generated_logo(program.brand_color, program.name, size)


def apple_images(*, slug: str, brand_color: str, name: str) -> dict[str, bytes]:
    """Every image of a store card, by file name. For each family (icon, logo) the operator's
    files win: the first of WALLET_APPLE_IMAGES_DIR/<slug>/ and WALLET_APPLE_IMAGES_DIR/ that
    holds `<family>.png` gives that family's files (its @2x/@3x too, when present); otherwise
    the family is drawn here. Files are read on each call (a few kB)."""
    folder = getattr(settings, "WALLET_APPLE_IMAGES_DIR", "")
    roots = [Path(folder) / slug, Path(folder)] if folder else []
    images: dict[str, bytes] = {}
    for family, draw in (("icon", generated_icon), ("logo", generated_logo)):
        slots = {n: size for n, size in APPLE_IMAGES.items() if n.startswith(family)}
        root = next((r for r in roots if (r / f"{family}.png").is_file()), None)
        if root is not None:
            images.update({n: (root / n).read_bytes() for n in slots if (root / n).is_file()})
        else:
            images.update({n: draw(brand_color, name, height) for n, (_w, height) in slots.items()})
    return images
