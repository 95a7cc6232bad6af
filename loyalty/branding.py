"""The brand colour's rules, shared by the emails' layout (notifications.email_render), the
portal's pages and the program admin's live preview (loyalty/static/loyalty/brand_preview.js
applies the same rules in the browser): the text on the colour is white or dark, whichever
reads better, and the colour is used on the white page only where it reads (WCAG contrast)."""

from __future__ import annotations

import re

DARK_TEXT = "#1f2328"
WHITE = "#ffffff"


def _luminance(color: str) -> float:
    """WCAG relative luminance of a #RRGGBB colour."""

    def channel(value: int) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    red, green, blue = (int(color[i : i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * channel(red) + 0.7152 * channel(green) + 0.0722 * channel(blue)


def contrast(first: str, second: str) -> float:
    """WCAG contrast ratio of two #RRGGBB colours (1 to 21)."""
    high, low = sorted((_luminance(first), _luminance(second)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def brand_colors(color: str) -> dict[str, str]:
    """The layout's colours for a brand colour: the text on it (white or dark, whichever reads
    better), and the colours used on the white page, the brand colour only where it reads on
    white (links need 4.5:1, big numbers and borders 3:1; else dark text)."""
    if not re.fullmatch(r"#[0-9A-Fa-f]{6}", color or ""):
        color = "#1F6FEB"  # the model's default; a row written by raw SQL may hold anything
    on_white = contrast(color, WHITE)
    return {
        "color": color,
        "on_color": WHITE if contrast(color, WHITE) >= contrast(color, DARK_TEXT) else DARK_TEXT,
        "link": color if on_white >= 4.5 else DARK_TEXT,
        "accent": color if on_white >= 3 else DARK_TEXT,
    }


def button_warning(color: str) -> str:
    """A warning when the best text colour on the brand colour (the portal's buttons, the
    emails' header) does not reach 4.5:1; "" when it reads."""
    colors = brand_colors(color)
    ratio = contrast(colors["color"], colors["on_color"])
    if ratio >= 4.5:
        return ""
    return (
        f"Hard to read: text on this colour reaches {int(ratio * 100) / 100:.2f}:1 (4.5:1 needed). "
        "Pick a darker or a lighter colour for the buttons and the emails' header."
    )


def light_colour_note(color: str) -> str:
    """A note when the colour is too light for text on white, so the pages use dark text
    instead for links (and, below 3:1, for big figures and the menu's underline); "" otherwise."""
    colors = brand_colors(color)
    ratio = contrast(colors["color"], WHITE)
    if ratio >= 4.5:
        return ""
    where = "links" if ratio >= 3 else "links, big figures and the menu's underline"
    return f"Too light for text on white ({int(ratio * 100) / 100:.2f}:1, 4.5:1 needed): {where} use dark text instead."
