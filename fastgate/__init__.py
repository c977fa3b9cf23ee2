"""fastgate: a high-performance API gateway with Tyk-compatible client authentication."""

__version__ = "0.1.0"
