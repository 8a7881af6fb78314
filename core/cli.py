"""What every entry point shares: turning user errors into one clear line and a non-zero exit."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig

from core.errors import UserError


def find_user_error(err: BaseException | None) -> UserError | None:
    """The :class:`UserError` behind ``err``, looking through wrappers (Hydra's InstantiationException...)."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, UserError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def run(fn: Callable[[DictConfig], Any], cfg: DictConfig) -> Any:
    """Call ``fn(cfg)``; a user error is printed as ``error: ...`` and exits with status 2, no traceback."""
    try:
        return fn(cfg)
    except Exception as err:
        user_error = find_user_error(err)
        if user_error is None:
            raise
        print(f"error: {user_error}", file=sys.stderr)
        sys.exit(2)
