"""The portal's French catalog is complete and its committed .mo is compiled from its .po."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

PO = Path(__file__).resolve().parents[2] / "portal" / "locale" / "fr" / "LC_MESSAGES" / "django.po"


def test_every_portal_string_has_a_french_translation():
    text = PO.read_text(encoding="utf-8")
    assert "#, fuzzy" not in text
    entries = text.split("\n\n")[1:]  # after the header
    empty = [e for e in entries if re.search(r'^msgstr(\[\d\])? ""$(?!\n")', e, re.M)]
    assert not empty, empty


@pytest.mark.skipif(not shutil.which("msgfmt"), reason="gettext is not installed")
def test_the_committed_mo_is_the_compiled_po(tmp_path):
    compiled = tmp_path / "django.mo"
    subprocess.run(["msgfmt", "--check", "-o", str(compiled), str(PO)], check=True)
    assert compiled.read_bytes() == PO.with_suffix(".mo").read_bytes()


XGETTEXT_KEYWORDS = [
    "--keyword=gettext_noop",
    "--keyword=gettext_lazy",
    "--keyword=ngettext_lazy:1,2",
    "--keyword=pgettext:1c,2",
    "--keyword=npgettext:1c,2,3",
    "--keyword=pgettext_lazy:1c,2",
    "--keyword=npgettext_lazy:1c,2,3",
]


def _sources(root: Path, tmp_path: Path) -> list[Path]:
    """The files `make messages` reads: the portal's Python and templates (templates turned into
    Python the way makemessages does) and the rule sentences of workflows."""
    from django.utils.translation.template import templatize

    files = [*sorted((root / "portal").rglob("*.py")), root / "workflows" / "customer_text.py"]
    for n, template in enumerate(sorted((root / "portal" / "templates").rglob("*.html"))):
        converted = tmp_path / f"template_{n}.py"
        converted.write_text(templatize(template.read_text(encoding="utf-8"), origin=str(template)), encoding="utf-8")
        files.append(converted)
    return files


def _unescape(text: str) -> str:
    return text.encode("latin-1", "backslashreplace").decode("unicode_escape")


@pytest.mark.skipif(not shutil.which("xgettext"), reason="gettext is not installed")
def test_every_string_in_the_code_is_in_the_compiled_french_catalog(tmp_path):
    """A string added to the code but never extracted (makemessages not run) shows in English to
    a French member: every msgid xgettext finds must have a French translation in the .mo."""
    import gettext

    root = PO.parents[4]
    pot = tmp_path / "portal.pot"
    subprocess.run(
        ["xgettext", "--language=Python", "--from-code=UTF-8", "--no-wrap", "--omit-header", "-o", str(pot)]
        + XGETTEXT_KEYWORDS
        + [str(f) for f in _sources(root, tmp_path)],
        check=True,
    )
    with PO.with_suffix(".mo").open("rb") as handle:
        catalog = gettext.GNUTranslations(handle)._catalog  # type: ignore[attr-defined]
    missing = []
    context = ""
    for line in pot.read_text(encoding="utf-8").splitlines():
        if line.startswith("msgctxt "):
            context = _unescape(line[9:-1]) + "\x04"
        elif line.startswith("msgid "):
            msgid = context + _unescape(line[7:-1])
            context = ""
            if msgid and msgid not in catalog and (msgid, 0) not in catalog:
                missing.append(msgid)
    assert not missing, missing
