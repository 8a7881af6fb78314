"""Toy domain: synthetic shapes on noise (no data on disk), ``.npy`` arrays in and out. The smallest complete domain,
and the one to copy: ``data.py`` (dataset builder), ``io.py`` (reader, writer), ``scorers.py`` (evaluation)."""
