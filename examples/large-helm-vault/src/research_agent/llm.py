"""The chat model named by the settings.

`fake` is an offline, deterministic model for tests and development.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

from .settings import Settings


class EchoChatModel(BaseChatModel):
    """Answers `Echo: <last user message>`; reports token usage as whitespace-separated words.
    `latency_seconds` simulates a remote model's response time (load tests, timeouts)."""

    model_name: str = "echo"
    latency_seconds: float = 0.0

    @property
    def _llm_type(self) -> str:
        return "echo"

    def _reply(self, messages: list[BaseMessage]) -> tuple[str, UsageMetadata]:
        last = next((m for m in reversed(messages) if m.type == "human"), None)
        text = f"Echo: {last.text if last is not None else ''}"
        prompt_tokens = sum(len(m.text.split()) for m in messages)
        output_tokens = len(text.split())
        usage = UsageMetadata(input_tokens=prompt_tokens, output_tokens=output_tokens,
                              total_tokens=prompt_tokens + output_tokens)
        return text, usage

    def _result(self, messages: list[BaseMessage]) -> ChatResult:
        text, usage = self._reply(messages)
        message = AIMessage(content=text, usage_metadata=usage,
                            response_metadata={"model_name": self.model_name})
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        return self._result(messages)

    async def _agenerate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                         run_manager: AsyncCallbackManagerForLLMRun | None = None,
                         **kwargs: Any) -> ChatResult:
        if self.latency_seconds:
            await asyncio.sleep(self.latency_seconds)
        return self._result(messages)

    def _chunks(self, messages: list[BaseMessage]) -> Iterator[ChatGenerationChunk]:
        text, usage = self._reply(messages)
        words = text.split(" ")
        for i, word in enumerate(words):
            last = i == len(words) - 1
            yield ChatGenerationChunk(message=AIMessageChunk(
                content=word if last else f"{word} ",
                usage_metadata=usage if last else None,
                response_metadata={"model_name": self.model_name} if last else {},
            ))

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None,
                **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        for chunk in self._chunks(messages):
            if run_manager:
                run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk

    async def _astream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                       run_manager: AsyncCallbackManagerForLLMRun | None = None,
                       **kwargs: Any) -> AsyncIterator[ChatGenerationChunk]:
        if self.latency_seconds:
            await asyncio.sleep(self.latency_seconds)
        for chunk in self._chunks(messages):
            if run_manager:
                await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk


def get_chat_model(settings: Settings) -> BaseChatModel:
    """Build the configured chat model. Provider packages are imported only when chosen."""
    if settings.llm_provider == "fake":
        return EchoChatModel(model_name=settings.llm_model,
                             latency_seconds=settings.llm_fake_latency_seconds)
    if settings.llm_provider == "openai":
        from langchain_openai import ChatOpenAI

        return ChatOpenAI(model=settings.llm_model, temperature=settings.llm_temperature,
                          timeout=settings.llm_timeout_seconds, api_key=settings.openai_api_key)
    if settings.llm_provider == "anthropic":
        from langchain_anthropic import ChatAnthropic

        return ChatAnthropic(model=settings.llm_model, temperature=settings.llm_temperature,
                             timeout=settings.llm_timeout_seconds,
                             api_key=settings.anthropic_api_key)
    raise ValueError(f"unknown llm_provider {settings.llm_provider!r}")
