"""Rendering member emails (docs/emails.md): a kind's template (the merchant's, else the shipped
default) rendered in a sandbox with plain data, wrapped in the program's branded layout.

- **Sandbox.** Templates run on their own `Engine` (no loaders, no template libraries beyond
  Django's built-in tags and filters), with plain data only. The HTML body is autoescaped, so a
  member called `<script>` is printed as text; subject and text body are plain text. Which tags
  and variables a merchant's template may use is checked when it is saved
  (`template_problems`): an unknown variable or a syntax error is a form error then, never an
  empty string or an exception at send time.
- **Layout.** The HTML body is the message's content; `emails/layout.mjml` (MJML: responsive,
  tested email markup) puts it between a header with the program's logo or name in its colour
  and a footer with the unsubscribe and preference links. The layout is compiled by MJML
  (mjml-python, no Node) once per program branding and language and kept in memory; each
  message only fills its content and links in, then css-inline moves the content's CSS into
  `style` attributes (mail clients drop `<style>` blocks).
"""

from __future__ import annotations

import functools
import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import css_inline
import mjml
from django.template import Context, Engine, Template, TemplateSyntaxError
from django.utils import translation

from loyalty import branding
from loyalty.presence import TtlCache
from workflows.automations import template_expressions

from . import email_kinds

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates" / "emails"
LANGUAGE_CODES = ("en", "fr")
DEFAULT_LANGUAGE = "en"

# Markers the compiled layout carries; replaced per message (never seen by MJML's parser as markup).
CONTENT_MARK = "LOYALTYCONTENTMARK"
UNSUBSCRIBE_MARK = "https://unsubscribe.invalid/LOYALTYMARK"
PREFERENCES_MARK = "https://preferences.invalid/LOYALTYMARK"

# Tags a merchant's template may use; others ({% include %}, {% load %}, {% url %}...) reach
# beyond the email.
EMAIL_TAGS = frozenset(
    {"if", "elif", "else", "endif", "for", "empty", "endfor", "with", "endwith", "comment", "firstof",
     "spaceless", "autoescape", "endautoescape", "filter", "endfilter", "templatetag", "verbatim", "cycle",
     "endcomment", "endspaceless", "endverbatim"}
)  # fmt: skip

# The sandbox engine: nothing but Django's built-in tags and filters; no loaders, so
# {% include %} and {% extends %} find nothing. Autoescape is set per render (HTML on, text off).
ENGINE = Engine(dirs=[], app_dirs=False, loaders=[], libraries={}, string_if_invalid="", autoescape=True)


@dataclass(frozen=True)
class Parts:
    """A kind's message in one language: subject, HTML content and text body (template sources)."""

    subject: str
    html_body: str
    text_body: str


@functools.lru_cache(maxsize=256)
def default_parts(kind: str, language: str) -> Parts:
    """The shipped default of `kind` in `language` (English when the language has none)."""
    folder = TEMPLATE_DIR / language
    if not (folder / f"{kind}.subject.txt").exists():
        folder = TEMPLATE_DIR / DEFAULT_LANGUAGE
    return Parts(
        subject=(folder / f"{kind}.subject.txt").read_text().strip(),
        html_body=(folder / f"{kind}.html").read_text(),
        text_body=(folder / f"{kind}.txt").read_text(),
    )


@functools.lru_cache(maxsize=1024)
def _compiled(source: str) -> Template:
    return ENGINE.from_string(source)


def render_string(source: str, context: dict[str, Any], *, autoescape: bool) -> str:
    return _compiled(source).render(Context(context, autoescape=autoescape))


# --------------------------------------------------------------------------------------------
# The save-time check


def template_problems(source: str, kind: str) -> list[str]:
    """What is wrong with a template of `kind`, in words (empty: nothing): a syntax error, a
    tag emails cannot use, or a variable or field the kind does not offer. Names bound by
    {% for %} over a list variable offer that list's item fields; {% with %} names are accepted."""
    from django.template.base import Node, VariableNode
    from django.template.defaulttags import ForNode, WithNode

    variables = email_kinds.variables_for(kind)
    try:
        template = ENGINE.from_string(source)
    except TemplateSyntaxError as exc:
        return [f"Template error: {exc}"]
    problems: list[str] = []
    nodes = template.nodelist.get_nodes_by_type(Node)
    local: dict[str, tuple[str, ...] | None] = {"forloop": None}
    for node in nodes:
        if isinstance(node, ForNode):
            sequence = getattr(node.sequence.var, "lookups", None) or ()
            item_fields = email_kinds.LIST_FIELDS.get(sequence[-1]) if sequence else None
            for name in node.loopvars:
                local[name] = item_fields
        elif isinstance(node, WithNode):
            for name in node.extra_context:
                local[name] = None
    unknown: list[str] = []
    for node in nodes:
        token = getattr(node, "token", None)
        if token is not None and token.token_type.name == "BLOCK":
            tag = token.contents.split()[0]
            if tag not in EMAIL_TAGS:
                problems.append(f"The {{% {tag} %}} tag cannot be used in an email.")
                continue
        for expression in template_expressions(node):
            references = [expression.var] + [arg for _, args in expression.filters for is_var, arg in args if is_var]
            for reference in references:
                lookups = getattr(reference, "lookups", None)
                if not lookups:
                    continue
                if lookups[0] in local:
                    fields = local[lookups[0]]
                    if fields is not None and len(lookups) == 2 and lookups[1] not in fields:
                        unknown.append(".".join(lookups))
                    continue
                fields = variables.get(lookups[0])
                if fields is None or len(lookups) > 2 or (len(lookups) == 2 and lookups[1] not in fields):
                    unknown.append(".".join(lookups))
                elif fields and len(lookups) == 1 and isinstance(node, VariableNode) and reference is expression.var:
                    problems.append(
                        f"{{{{ {lookups[0]} }}}} prints nothing useful: name a field, e.g. {lookups[0]}.{fields[0]}."
                    )
    if unknown:
        offered = ", ".join(
            f"{name}.{field}" if field else name for name, fields in variables.items() for field in (fields or ("",))
        )
        names = ", ".join(dict.fromkeys(unknown))
        problems.append(f"Unknown variable(s): {names}. This email can use: {offered}.")
    return problems


# --------------------------------------------------------------------------------------------
# Layout


@dataclass(frozen=True)
class Branding:
    name: str
    color: str
    logo_url: str
    postal_address: str
    language: str


_layouts: TtlCache[str] = TtlCache(ttl=300.0)
# Keep the <style> blocks (MJML's media queries make the layout responsive); never fetch a
# stylesheet from the network.
_INLINER = css_inline.CSSInliner(keep_style_tags=True, load_remote_stylesheets=False)

FOOTER_WORDS = {
    "en": {
        "unsubscribe": "Unsubscribe",
        "preferences": "Email preferences",
        "why": "You receive this email as a member of",
    },
    "fr": {
        "unsubscribe": "Se désabonner",
        "preferences": "Préférences e-mail",
        "why": "Vous recevez cet e-mail en tant que membre de",
    },
}


# The colour rules are shared with the admin's brand preview (loyalty/branding.py).
DARK_TEXT, WHITE = branding.DARK_TEXT, branding.WHITE
contrast = branding.contrast
brand_colors = branding.brand_colors


def _layout(branding: Branding) -> str:
    """The program's layout compiled to HTML, with the content and link markers in it."""

    def compile_layout() -> str:
        source = (TEMPLATE_DIR / "layout.mjml").read_text()
        context = {
            "brand": {
                **brand_colors(branding.color),
                "name": branding.name,
                "logo_url": branding.logo_url,
                "postal_address": branding.postal_address,
            },
            "words": FOOTER_WORDS.get(branding.language, FOOTER_WORDS[DEFAULT_LANGUAGE]),
            "language": branding.language,
            "content_mark": CONTENT_MARK,
            "unsubscribe_mark": UNSUBSCRIBE_MARK,
            "preferences_mark": PREFERENCES_MARK,
        }
        markup = ENGINE.from_string(source).render(Context(context, autoescape=True))
        # fonts={}: no web fonts (no request to a font CDN from the member's mail client).
        return mjml.mjml2html(markup, fonts={}, disable_comments=True)

    return _layouts.get(branding, compile_layout)


def wrap_html(content: str, *, branding: Branding, unsubscribe_url: str, preferences_url: str) -> str:
    """The whole HTML email: the layout around `content`, links filled in, CSS inlined."""
    page = (
        _layout(branding)
        .replace(CONTENT_MARK, content)
        .replace(UNSUBSCRIBE_MARK, html.escape(unsubscribe_url))
        .replace(PREFERENCES_MARK, html.escape(preferences_url))
    )
    return _INLINER.inline(page)


@dataclass(frozen=True)
class Rendered:
    subject: str
    html: str
    text: str


def render(
    *,
    parts: Parts,
    context: dict[str, Any],
    branding: Branding,
    unsubscribe_url: str,
    preferences_url: str,
) -> Rendered:
    """Render one message in the branding's language (dates and numbers formatted for it)."""
    with translation.override(branding.language):
        subject = " ".join(render_string(parts.subject, context, autoescape=False).split())
        content = render_string(parts.html_body, context, autoescape=True)
        text = render_string(parts.text_body, context, autoescape=False).strip()
    words = FOOTER_WORDS.get(branding.language, FOOTER_WORDS[DEFAULT_LANGUAGE])
    text += f"\n\n--\n{branding.name}\n{words['unsubscribe']}: {unsubscribe_url}\n"
    return Rendered(
        subject=subject[:300],
        html=wrap_html(content, branding=branding, unsubscribe_url=unsubscribe_url, preferences_url=preferences_url),
        text=text,
    )
