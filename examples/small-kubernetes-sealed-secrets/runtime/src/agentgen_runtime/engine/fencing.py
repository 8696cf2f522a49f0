"""Lease fencing: every write a run makes is accepted only from the attempt that holds its lease.

A run's attempt number grows each time a worker claims it, so (run id, attempt) names one claim.
While a run executes, its task carries that pair (`FENCE`, a context variable: every task LangGraph
starts for the run inherits it). The run's writes carry it into the database, where
`agent_fence()` checks it in the same statement as the write: the run row must still be `running`
at that attempt. The check takes a share lock on the run row until the write commits, so no takeover
happens while a write is under way (the reaper skips the row; the holder's lease renewal waits for
it), and a write after a takeover is refused with SQLSTATE AGF01. A refused write raises in the
zombie attempt, which stops without touching the thread (the engine records it as fenced: log and
metric).

What is fenced: checkpoints and pending writes (the checkpointer's two statements that change what
a thread's next reader sees, rewritten here to call `agent_fence()`: no extra round trip), run
events, store writes made by the graph (one statement before the batch, in its transaction) and
the run's outcome (the engine's finishing UPDATE names worker and attempt). Checkpoint blobs are
not: a blob no checkpoint refers to is never read, and blob versions are unique per write.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

# (run id, attempt) of the run whose task this is; None outside runs (API state updates).
FENCE: ContextVar[tuple[str, int] | None] = ContextVar("agentgen_fence", default=None)
SQLSTATE = "AGF01"

FUNCTION = """
CREATE OR REPLACE FUNCTION agent_fence(p_run_id text, p_attempt integer, p_value text)
RETURNS text LANGUAGE plpgsql VOLATILE AS $fn$
BEGIN
    PERFORM 1 FROM agent_runs
    WHERE run_id = p_run_id AND attempt = p_attempt AND status = 'running' FOR SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'run % attempt % no longer holds its lease: write refused',
            p_run_id, p_attempt USING ERRCODE = 'AGF01';
    END IF;
    RETURN p_value;
END
$fn$
"""


class Fenced(Exception):
    """This attempt of the run lost its lease (another worker holds the run): it must stop."""


def is_fenced(exc: BaseException | None) -> bool:
    """Whether an exception (or one it was raised from) is a write refused by agent_fence()."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, Fenced) or getattr(exc, "sqlstate", None) == SQLSTATE:
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def fenced_statement(query: str) -> str:
    """`INSERT ... VALUES (%s, ...)` with its first value passed through agent_fence(run, attempt,
    value): two parameters are prepended. Raises RuntimeError when the statement does not have that
    shape (a checkpointer release changed its SQL: fencing must not silently stop)."""
    marker = "VALUES (%s,"
    if query.count(marker) != 1:
        raise RuntimeError("cannot fence this statement (its shape changed): " + query.strip()[:80])
    return query.replace(marker, "VALUES (agent_fence(%s, %s::integer, %s),")


class FencingCursor:
    """A cursor that sends the statements named in `statements` (upstream SQL -> fenced SQL) in
    their fenced form, with the current run's fence prepended to their parameters; everything else
    passes through unchanged."""

    def __init__(self, cursor: Any, fence: tuple[str, int], statements: dict[str, str]) -> None:
        self._cursor, self._fence, self._statements = cursor, fence, statements

    async def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        fenced = self._statements.get(query) if isinstance(query, str) else None
        if fenced is not None:
            query, params = fenced, (*self._fence, *params)
        return await self._cursor.execute(query, params, **kwargs)

    async def executemany(self, query: Any, params_seq: Any, **kwargs: Any) -> Any:
        fenced = self._statements.get(query) if isinstance(query, str) else None
        if fenced is not None:
            query, params_seq = fenced, [(*self._fence, *params) for params in params_seq]
        return await self._cursor.executemany(query, params_seq, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)

    def __aiter__(self) -> Any:
        return self._cursor.__aiter__()
