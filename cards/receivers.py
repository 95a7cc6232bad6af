"""Reactions of the cards app to loyalty signals."""
