"""Tyk's key record, key ids, the session lookup and write path, its cache, and policies."""
