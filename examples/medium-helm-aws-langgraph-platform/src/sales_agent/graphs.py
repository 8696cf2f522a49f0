"""The graphs this service serves: those declared in langgraph.json, one assistant each."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langgraph.pregel import Pregel

# LangGraph Platform derives an assistant's id from its graph id the same way.
ASSISTANT_NAMESPACE = uuid.UUID("6ba7b821-9dad-11d1-80b4-00c04fd430c8")


@dataclass(frozen=True)
class Graph:
    graph_id: str
    assistant_id: str
    compiled: Pregel  # without a checkpointer: the service binds its own

    def bind(self, checkpointer: Any, store: Any) -> Pregel:
        return self.compiled.copy(update={"checkpointer": checkpointer, "store": store})


def _config_path() -> Path:
    configured = os.environ.get("LANGGRAPH_CONFIG")
    if configured:
        return Path(configured)
    for candidate in (Path.cwd() / "langgraph.json", Path("/app/langgraph.json")):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("langgraph.json not found (set LANGGRAPH_CONFIG)")


def _import(spec: str, base: Path) -> Any:
    """`./src/pkg/graph.py:graph` (imported as the installed module `pkg.graph` when it is one, so
    that the package's own imports work) or `pkg.graph:graph`."""
    location, _, attribute = spec.partition(":")
    if location.endswith(".py"):
        parts = Path(location).with_suffix("").parts
        module_name = ".".join(p for p in parts if p not in {".", "src"})
        if importlib.util.find_spec(module_name.split(".")[0]) is not None:
            module = importlib.import_module(module_name)
        else:
            file_spec = importlib.util.spec_from_file_location(module_name, base / location)
            if file_spec is None or file_spec.loader is None:
                raise ImportError(f"cannot load graph file {location}")
            module = importlib.util.module_from_spec(file_spec)
            file_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(location)
    value = getattr(module, attribute or "graph")
    return value() if callable(value) and not isinstance(value, Pregel) else value


def load_graphs() -> dict[str, Graph]:
    path = _config_path()
    config = json.loads(path.read_text(encoding="utf-8"))
    graphs = {}
    for graph_id, spec in config.get("graphs", {}).items():
        compiled = _import(spec if isinstance(spec, str) else spec["path"], path.parent)
        assistant_id = str(uuid.uuid5(ASSISTANT_NAMESPACE, graph_id))
        graphs[graph_id] = Graph(graph_id, assistant_id, compiled)
    if not graphs:
        raise ValueError(f"{path} declares no graphs")
    return graphs
