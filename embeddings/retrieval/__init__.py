"""Serving the published indexes: ``service`` (load, query, hot reload) and ``http`` (loopback JSON API)."""
