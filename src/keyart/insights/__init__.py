"""Insights for artists and designers: which imagery wins for whom, clickbait, what to add."""
