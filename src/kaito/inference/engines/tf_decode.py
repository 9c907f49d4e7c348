"""Turns generated token ids into streamable text: whole characters only, and nothing of a stop string ever leaks."""

from __future__ import annotations

from collections.abc import Callable, Sequence

Decode = Callable[[list[int]], str]

_INCOMPLETE = "\ufffd"  # what a byte-level decoder yields for a multi-byte character cut in half


class IncrementalDetokenizer:
    """Decodes a growing token list, emitting only new, complete characters.

    Each step re-decodes a short window (the previously emitted tokens' last chunk plus the new ones) rather than the
    whole list, so cost stays flat; keeping that earlier chunk in the window preserves tokenizer context such as
    SentencePiece's leading-space rule.
    """

    def __init__(self, decode: Decode) -> None:
        self._decode = decode
        self._ids: list[int] = []
        self._window_start = 0
        self._emitted_upto = 0

    def push(self, token_id: int) -> str:
        self._ids.append(token_id)
        return self._advance(final=False)

    def flush(self) -> str:
        """Everything still held back, replacement characters included, once no more tokens will come."""
        return self._advance(final=True)

    def _advance(self, *, final: bool) -> str:
        known = self._decode(self._ids[self._window_start : self._emitted_upto])
        text = self._decode(self._ids[self._window_start :])
        if len(text) <= len(known) or (text.endswith(_INCOMPLETE) and not final):
            return ""
        self._window_start, self._emitted_upto = self._emitted_upto, len(self._ids)
        return text[len(known) :]


class StopFilter:
    """Passes text through until a stop string appears; holds back any tail that could be a stop string's start."""

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = tuple(stops)
        self._longest = max((len(s) for s in self._stops), default=0)
        self._pending = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        if self.stopped:
            return ""
        self._pending += text
        cut = self._first_stop()
        if cut is not None:
            self.stopped = True
            out, self._pending = self._pending[:cut], ""
            return out
        keep = self._held_tail()
        out = self._pending[: len(self._pending) - keep]
        self._pending = self._pending[len(out) :]
        return out

    def flush(self) -> str:
        out, self._pending = self._pending, ""
        return "" if self.stopped else out

    def _first_stop(self) -> int | None:
        hits = [i for i in (self._pending.find(s) for s in self._stops) if i >= 0]
        return min(hits) if hits else None

    def _held_tail(self) -> int:
        # Earlier text was emitted only because no stop string could start in it, so the tail is all we check.
        for size in range(min(len(self._pending), self._longest - 1), 0, -1):
            tail = self._pending[-size:]
            if any(s.startswith(tail) for s in self._stops):
                return size
        return 0


class CompletionText:
    """One completion's text stream: detokenize, then filter stop strings; `stopped` says a stop string ended it."""

    def __init__(self, decode: Decode, stops: Sequence[str]) -> None:
        self._detokenizer = IncrementalDetokenizer(decode)
        self._filter = StopFilter(stops)

    @property
    def stopped(self) -> bool:
        return self._filter.stopped

    def add(self, token_id: int) -> str:
        return self._filter.feed(self._detokenizer.push(token_id))

    def finish(self) -> str:
        text = self._filter.feed(self._detokenizer.flush())
        return text + self._filter.flush()
