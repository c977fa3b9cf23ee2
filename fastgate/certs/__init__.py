"""Certificates: the store shared with ``/tyk/certs`` and the client certificate of a connection."""
