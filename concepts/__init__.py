"""Concepts: registry, heads, versions, calibration, taxonomy, moderation policies."""
