"""Logs (JSON, one object per line, with request id, thread id and latency), Prometheus metrics, and
the optional LangSmith and Sentry integrations."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from contextvars import ContextVar
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)

from .settings import Settings

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
thread_id: ContextVar[str | None] = ContextVar("thread_id", default=None)


class JsonFormatter(logging.Formatter):
    """One JSON object per line; request and thread ids come from the request's context."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, var in (("request_id", request_id), ("thread_id", thread_id)):
            if (value := var.get()) is not None:
                entry[key] = value
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True  # our access log has ids and latency
    logging.getLogger("httpx").setLevel(logging.WARNING)


def configure_integrations(settings: Settings) -> None:
    """LangSmith tracing (LANGSMITH_TRACING, with LANGSMITH_API_KEY from the secret sources) and
    Sentry, when configured (its package is imported only then)."""
    tracing = os.environ.get("LANGSMITH_TRACING", "").lower() in {"1", "true", "yes"}
    if tracing and not (os.environ.get("LANGSMITH_API_KEY") or os.environ.get("LANGCHAIN_API_KEY")):
        logging.getLogger(__name__).warning("LANGSMITH_TRACING is on without LANGSMITH_API_KEY: off")
        os.environ["LANGSMITH_TRACING"] = "false"
    if settings.sentry_dsn is not None:
        import sentry_sdk

        sentry_sdk.init(dsn=settings.sentry_dsn.get_secret_value(), traces_sample_rate=0.0)


# Metrics. With several uvicorn workers, prometheus-client's multiprocess mode aggregates them
# (PROMETHEUS_MULTIPROC_DIR is set by `serve` before the workers start).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
HTTP_REQUESTS = Counter("agent_http_requests_total", "HTTP requests", ["method", "route", "status"])
HTTP_LATENCY = Histogram("agent_http_request_duration_seconds", "HTTP request latency",
                         ["method", "route"], buckets=LATENCY_BUCKETS)
RUNS_ACTIVE = Gauge("agent_runs_active", "Runs in progress", ["graph"], multiprocess_mode="livesum")
RUN_DURATION = Histogram("agent_run_duration_seconds", "Run duration", ["graph", "status"],
                         buckets=LATENCY_BUCKETS)
QUEUE_DEPTH = Gauge("agent_run_queue_depth", "Runs waiting for a worker (pending)",
                    multiprocess_mode="mostrecent")
QUEUE_WAIT = Histogram("agent_run_queue_wait_seconds", "Time from a run's creation to its claim",
                       buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))
RUNS_RETRIED = Counter("agent_runs_retried_total",
                       "Runs claimed again after their lease lapsed (their process died)")
RUNS_ABANDONED = Counter("agent_runs_abandoned_total",
                         "Runs marked error after run_max_attempts lapsed leases")
RUNS_FENCED = Counter("agent_runs_fenced_total",
                      "Run attempts stopped because a write came after another worker took the run "
                      "over (the process stalled or lost the database past its lease)")
CRON_RUNS = Counter("agent_cron_runs_total",
                    "Cron ticks taken: outcome created (the tick's run was queued) or failed "
                    "(it could not be: the cron's last_error says why)", ["outcome"])
WEBHOOK_DELIVERIES = Counter("agent_webhook_deliveries_total",
                             "Webhook calls: delivered, retried (failed, tried again later), failed "
                             "(gave up after webhook_max_attempts), refused (the URL policy)",
                             ["outcome"])
LOOP_STALLS = Counter("agent_event_loop_stalls_total",
                      "Times the event loop was blocked longer than loop_stall_warn_seconds "
                      "(blocking code in an async node)")
LLM_TOKENS = Counter("agent_llm_tokens_total", "LLM tokens", ["model", "type"])
LLM_COST = Counter("agent_llm_cost_usd_total", "LLM cost in USD (from the price table)", ["model"])
CHECKPOINTER_OPS = Counter("agent_checkpointer_operations_total", "Checkpointer operations",
                           ["operation"])
CHECKPOINTER_LATENCY = Histogram("agent_checkpointer_operation_duration_seconds",
                                 "Checkpointer operation latency", ["operation"],
                                 buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5))
DEPENDENCY_ERRORS = Counter("agent_dependency_errors_total",
                            "Requests answered 503 because a dependency was unavailable", ["dependency"])
RATE_LIMIT_FALLBACKS = Counter("agent_rate_limit_fallbacks_total",
                               "Rate limit checks done in-process because Redis failed")
DEPENDENCY_UP = Gauge("agent_dependency_up", "1 when the dependency answered the last readiness check",
                      ["dependency"], multiprocess_mode="liveall")


def _registry() -> CollectorRegistry:
    """This process's metrics, or every worker's (aggregated from their files) with several."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


def metrics_response() -> tuple[bytes, str]:
    return generate_latest(_registry()), CONTENT_TYPE_LATEST


def start_metrics_server(host: str, port: int) -> int:
    """Serve the metrics (any path, /metrics for the scrapers) on their own port from a thread of
    the serving process (the workers' supervisor when there are several): it answers while an
    event loop is blocked. The port it listens on; OSError when it cannot."""
    started = start_http_server(port, addr=host, registry=_registry())
    return started[0].server_address[1] if started else port  # prometheus-client < 0.20: None


def record_usage(settings: Settings, message: Any) -> None:
    """Token and cost counters from an AI message's usage metadata."""
    usage = getattr(message, "usage_metadata", None)
    if not usage:
        return
    model = (getattr(message, "response_metadata", None) or {}).get("model_name") or "unknown"
    input_tokens, output_tokens = usage.get("input_tokens", 0), usage.get("output_tokens", 0)
    LLM_TOKENS.labels(model, "input").inc(input_tokens)
    LLM_TOKENS.labels(model, "output").inc(output_tokens)
    price_in, price_out = settings.llm_prices.get(model, (0.0, 0.0))
    cost = (input_tokens * price_in + output_tokens * price_out) / 1_000_000
    if cost:
        LLM_COST.labels(model).inc(cost)
