"""Blocking calls from the event loop: run them on the loop's worker threads, with the caller's context."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from typing import Any, TypeVar

_T = TypeVar("_T")


async def in_thread(function: Callable[..., _T], *args: Any) -> _T:
    """``function(*args)`` on one of the event loop's default executor threads (the API sizes that pool to
    ``EBL_WORKER_THREADS``), with this task's context variables (the request id of its log lines)."""
    context = contextvars.copy_context()
    return await asyncio.get_running_loop().run_in_executor(None, context.run, function, *args)
