"""Tyk's ``tyk`` Python package, as a plugin file imports it (``from tyk.decorators import *``).

This is fastgate's compatibility copy: the plugin loader puts ``fastgate/plugins/compat`` on
``sys.path`` only while it imports plugin files, so ``tyk`` and ``gateway`` resolve here without
being installed as top-level packages.
"""
