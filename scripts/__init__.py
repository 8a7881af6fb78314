"""The commands, one module each: ``segsuite COMMAND ARGS`` (``python scripts/COMMAND.py ARGS`` in a clone) runs
COMMAND.py as ``__main__``."""
