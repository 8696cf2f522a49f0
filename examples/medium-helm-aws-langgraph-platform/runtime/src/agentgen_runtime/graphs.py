"""The graphs this server serves: those declared in langgraph.json, one assistant each.

A graph is a compiled graph, a graph builder (compiled here), or a factory: a function, sync or
async, taking no argument or the run's config, that returns either. A factory that takes the config
is called for every run, as LangGraph Platform does; the others once, at start-up.
"""

from __future__ import annotations

import inspect
import uuid
from dataclasses import dataclass
from typing import Any

from langgraph.pregel import Pregel

from .config import Config, ConfigError, import_object

# LangGraph Platform derives an assistant's id from its graph id the same way.
ASSISTANT_NAMESPACE = uuid.UUID("6ba7b821-9dad-11d1-80b4-00c04fd430c8")


async def _materialize(value: Any, config: dict[str, Any] | None) -> Pregel:
    if isinstance(value, Pregel):
        return value
    if hasattr(value, "compile") and not callable(getattr(value, "invoke", None)):
        return value.compile()
    if callable(value):
        result = value(config or {"configurable": {}}) if _takes_config(value) else value()
        if inspect.isawaitable(result):
            result = await result
        return await _materialize(result, config) if not isinstance(result, Pregel) else result
    raise ConfigError(f"not a graph, a graph builder or a factory: {type(value).__name__}")


def _takes_config(factory: Any) -> bool:
    try:
        return len(inspect.signature(factory).parameters) >= 1
    except (TypeError, ValueError):
        return False


@dataclass
class Graph:
    graph_id: str
    assistant_id: str
    description: str | None
    compiled: Pregel  # without the server's checkpointer and store
    factory: Any = None  # called per run when it takes the run's config

    @property
    def context_schema(self) -> Any:
        return getattr(self.compiled, "context_schema", None)

    def default_context(self) -> dict[str, Any] | None:
        """What `langgraph dev` passes for a run without `context`: the schema's defaults ({} is
        coerced to the schema by LangGraph), or None when the graph declares no context."""
        return None if self.context_schema is None else {}

    async def bound(self, checkpointer: Any, store: Any, config: dict[str, Any] | None) -> Pregel:
        compiled = await _materialize(self.factory, config) if self.factory is not None else self.compiled
        return compiled.copy(update={"checkpointer": checkpointer, "store": store})

    async def stateless(self, config: dict[str, Any] | None, store: Any) -> Pregel:
        compiled = await _materialize(self.factory, config) if self.factory is not None else self.compiled
        return compiled.copy(update={"checkpointer": None, "store": store})

    def schemas(self) -> dict[str, Any]:
        """The graph's input, output, state and context JSON schemas (`/assistants/{id}/schemas`)."""
        return {"graph_id": self.graph_id, **_schemas(self.compiled)}

    def drawing(self, xray: bool | int) -> dict[str, Any]:
        """The graph's nodes and edges as Studio draws them (`/assistants/{id}/graph`); `xray`
        draws the nodes of subgraphs too (True: every level, n: n levels)."""
        drawn = self.compiled.get_graph(xray=xray).to_json()
        for node in drawn.get("nodes") or ():
            if isinstance(node.get("data"), dict):
                node["data"].pop("id", None)  # the class path of the node's runnable
        return drawn

    def subgraphs(self, namespace: str | None, recurse: bool) -> dict[str, Any]:
        """{namespace: its schemas} of the graph's subgraphs (`/assistants/{id}/subgraphs`)."""
        return {ns: _schemas(graph) for ns, graph in
                self.compiled.get_subgraphs(namespace=namespace, recurse=recurse)}


def _schemas(graph: Pregel) -> dict[str, Any]:
    def safe(method: str) -> Any:
        try:
            return getattr(graph, method)()
        except Exception:  # noqa: BLE001 - a schema that cannot be rendered is reported as None
            return None

    return {"input_schema": safe("get_input_jsonschema"), "output_schema": safe("get_output_jsonschema"),
            "state_schema": safe("get_input_jsonschema"), "config_schema": safe("get_config_jsonschema"),
            "context_schema": safe("get_context_jsonschema")}


async def load_graphs(config: Config) -> dict[str, Graph]:
    """Import every graph of langgraph.json (after config.apply). Raises ConfigError."""
    graphs: dict[str, Graph] = {}
    for spec in config.graphs:
        graphs[spec.graph_id] = await load_graph(config, spec)
    return graphs


class GraphLoadError(ConfigError):
    """A graph of langgraph.json failed to load: `reason` in one line."""

    def __init__(self, spec: Any, reason: str) -> None:
        super().__init__(f"graphs.{spec.graph_id} ({spec.location}): {reason}")
        self.reason = reason


async def load_graph(config: Config, spec: Any) -> Graph:
    """Import one graph of langgraph.json (after config.apply). Raises ConfigError naming the
    graph for any failure of its module (an import error, a factory that raises, not a graph)."""
    try:
        value = import_object(spec.location, config.base)
        per_run = callable(value) and not isinstance(value, Pregel) and _takes_config(value) \
            and not hasattr(value, "compile")
        compiled = await _materialize(value, None)
    except ConfigError as exc:
        raise GraphLoadError(spec, str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - the user's module: one line naming the graph
        raise GraphLoadError(spec, f"{type(exc).__name__}: {' '.join(str(exc).split())}") from None
    assistant_id = str(uuid.uuid5(ASSISTANT_NAMESPACE, spec.graph_id))
    return Graph(spec.graph_id, assistant_id, spec.description, compiled,
                 value if per_run else None)


def check_graphs() -> int:
    """`agentgen-runtime graphs`: import every graph of langgraph.json as the server does (its env
    file applied, its local dependencies importable; no settings, secrets or database needed).
    Prints one line per graph, `ok <id>` or `error <id>: <why>`; exit 1 when any fails."""
    import asyncio
    import sys

    from .config import apply, load_config

    try:
        config = load_config()
        apply(config)
    except ConfigError as exc:
        print(f"error langgraph.json: {' '.join(str(exc).split())}")
        return 1
    failed = 0
    for spec in config.graphs:
        try:
            asyncio.run(load_graph(config, spec))
        except GraphLoadError as exc:
            failed += 1
            print(f"error {spec.graph_id}: {exc.reason}")
        else:
            print(f"ok {spec.graph_id}")
    sys.stdout.flush()
    return 1 if failed else 0
