"""Sans-IO HTTP/1.1: the message rules (``h1``) and the per-request view stages read (``request``)."""
