"""PacedEdits: keeps one message showing the newest of a stream of texts (a progress bar).

Like StreamingReply, the caller hands over texts without waiting (`show()`); a writer task beside
it edits the message at most once per `interval` seconds, always with the newest text (texts in
between are skipped), and within Discord's edit budget with one slot kept free, so that the
final text (`finish()`) goes out at once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from bot.ui.streaming import EditBudget

log = logging.getLogger(__name__)


class PacedEdits:
    """One message kept up to date. Use `show()` while things change, then `finish()`."""

    def __init__(
        self,
        write: Callable[[str], Awaitable[object]],
        *,
        interval: float = 1.0,
        budget: EditBudget | None = None,
        bucket: str = "progress",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._write_text = write
        self._budget = budget if budget is not None else EditBudget(clock=clock)
        self._bucket = bucket  # the Discord bucket the message's edits draw from
        # Edits before the last use at most count - 1 slots of a window: one is kept for it.
        self._spacing = max(interval, self._budget.window / max(self._budget.count - 1, 1))
        self._clock = clock
        self._wanted: str | None = None
        self._shown: str | None = None
        self._final = False
        self._wake = asyncio.Event()
        self._writer = asyncio.create_task(self._write(), name="paced-edits-writer")
        self.edits = 0
        self.broken = False
        """True once an edit failed (the message was deleted, or its token expired): the
        message is then left alone."""

    def show(self, text: str) -> None:
        """Show `text` when the pace allows (it replaces any text not yet shown)."""
        if not self._final:
            self._wanted = text
            self._wake.set()

    async def finish(self, text: str) -> bool:
        """Show `text` as the last edit, as soon as Discord's budget allows; True if shown."""
        self._wanted = text
        self._final = True
        self._wake.set()
        await self._writer
        return not self.broken and self._shown == text

    async def cancel(self) -> None:
        self._writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._writer

    async def _write(self) -> None:
        while not self.broken:
            text, final = self._wanted, self._final
            if text is None or text == self._shown:
                if final:
                    return
                await self._wake.wait()
                self._wake.clear()
                continue
            wait = self._wait_before_edit(final)
            if wait > 0:
                if final:
                    await asyncio.sleep(wait)  # only when Discord's budget is spent
                else:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(wait):
                            await self._wake.wait()
                    if not self._final:
                        self._wake.clear()
                continue
            try:
                await self._write_text(text)
            except Exception:
                # The message is gone, its interaction token expired (after 15 minutes), or the
                # bot is shutting down: a progress display never takes its command down with it.
                log.warning("could not edit a progress message; leaving it", exc_info=True)
                self.broken = True
                return
            self._shown = text
            self._budget.record(self._bucket)
            self.edits += 1

    def _wait_before_edit(self, final: bool) -> float:
        return self._budget.wait(self._bucket, last=final, spacing=self._spacing)
