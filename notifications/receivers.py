"""Reactions of the notifications app to the signals of lower apps (STYLE.md rule 15)."""
