"""``python -m segsuite COMMAND [ARGS ...]``: the same as the ``segsuite`` command."""

from segsuite.command import main

if __name__ == "__main__":
    main()
