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
