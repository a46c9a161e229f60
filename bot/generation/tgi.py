"""Answers written by the model a TGI server hosts (base model + lorebot's LoRA adapter), through
huggingface_hub's ``InferenceClient`` and the Messages API (``/v1/chat/completions``, streamed),
so the server applies the model's own chat template. Servers with the same API (vLLM, LoRAX,
SGLang) work the same way.

Every failure ends in a typed :class:`~bot.generation.server_errors.GenerationServerError`; the
caller (``bot/generation/fallback.py``) then answers by quoting, with a one-line note.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx2
from huggingface_hub import InferenceClient
from huggingface_hub.errors import (
    GenerationError,
    HfHubHTTPError,
    IncompleteGenerationError,
    InferenceTimeoutError,
    OverloadedError,
    TextGenerationError,
    ValidationError,
)

from bot.generation.adapters import AdapterChoice
from bot.generation.base import Draft, GenerationRequest
from bot.generation.breaker import CircuitBreaker
from bot.generation.prompt import Prompt, build_prompt
from bot.generation.server import ServerInfo, probe_server
from bot.generation.server_errors import (
    AdapterNotFound,
    GenerationFailed,
    GenerationServerError,
    GenerationTimeout,
    InputTooLong,
    ServerUnavailable,
    error_from_payload,
)

log = logging.getLogger(__name__)

# An adapter the server refused is asked for again after this long (it may have been loaded since;
# vLLM and LoRAX load adapters while running).
MISSING_ADAPTER_RECHECK_S = 60.0
_STREAM_ERROR_TYPES: dict[type, str] = {
    OverloadedError: "overloaded", ValidationError: "validation", GenerationError: "generation",
    IncompleteGenerationError: "incomplete_generation",
}


@dataclass(frozen=True)
class TGIOptions:
    url: str
    token: str | None = None
    connect_timeout_s: float = 3.0
    first_token_timeout_s: float = 20.0
    total_timeout_s: float = 90.0
    retries: int = 2  # for an overloaded or briefly unavailable server, before any token arrived
    backoff_s: float = 0.5
    max_answer_tokens: int = 512
    temperature: float = 0.2
    # The prompt is packed into this share of the server's input limit, leaving room for the
    # difference between lorebot's token estimate and the server's tokenizer.
    budget_fraction: float = 0.9
    breaker_failures: int = 3
    breaker_cooldown_s: float = 30.0


@dataclass
class _Attempt:
    """One question's way through the server: the model asked for, and what was learnt."""

    model: str
    adapter: str | None
    budget_tokens: int
    prompt: Prompt | None = None
    pieces: list[str] = field(default_factory=list)
    first_token_ms: float | None = None


class TGIGenerator:
    """A :class:`~bot.generation.base.Generator` backed by a TGI server (``TGI_URL``)."""

    name = "tgi"

    def __init__(self, options: TGIOptions, *, adapters: AdapterChoice | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        self.options = options
        self.adapters = adapters or AdapterChoice()
        self.breaker = CircuitBreaker(failures=options.breaker_failures, cooldown_s=options.breaker_cooldown_s)
        self._sleep = sleep
        self._lock = threading.Lock()
        self._info: ServerInfo | None = None
        self._system_role = True
        self._warned_adapters: set[str] = set()
        self._missing: dict[str, float] = {}  # adapter -> when the server last refused it

    # ------------------------------------------------------------------ the server

    def check(self) -> ServerInfo:
        """Read the server's limits and check its health now (at start): raises a typed error
        whose message says what is wrong."""
        with self._lock:
            self._info = probe_server(self.options.url, token=self.options.token,
                                      timeout_s=self.options.connect_timeout_s + 2)
            return self._info

    def _server(self) -> ServerInfo:
        return self._info or self.check()

    # ------------------------------------------------------------------ answering

    def generate(self, request: GenerationRequest, *, on_text: Callable[[str], None] | None = None) -> Draft:
        if not self.breaker.allow():
            raise ServerUnavailable(f"the generation server failed repeatedly; next try in "
                                    f"{self.breaker.seconds_until_trial():.0f} s")
        started = time.monotonic()
        try:
            draft = self._generate(request, on_text, deadline=started + self.options.total_timeout_s)
        except GenerationServerError as e:
            if e.server_fault:
                self.breaker.record_failure()
                self._info = None  # it may come back with other limits or adapters: ask again
            else:
                self.breaker.release()
            raise
        except BaseException:
            self.breaker.release()
            raise
        self.breaker.record_success()
        return draft

    def _generate(self, request: GenerationRequest, on_text: Callable[[str], None] | None, *, deadline: float) -> Draft:
        started = time.monotonic()
        info = self._server()
        attempt = self._first_attempt(request, info)
        retries_left, repacked = self.options.retries, False
        while True:
            attempt.prompt = build_prompt(request.question, request.passages, history=request.history,
                                          budget_tokens=attempt.budget_tokens, system_role=self._system_role)
            if request.passages and not attempt.prompt.passages_used:
                raise InputTooLong(f"not one passage fits in a prompt of {attempt.budget_tokens} tokens "
                                   f"(the server's input limit is {info.max_input_tokens})")
            try:
                self._stream(attempt, info, on_text, deadline)
                break
            except AdapterNotFound:
                if attempt.adapter is None:
                    raise
                self._missing[attempt.adapter] = time.monotonic()
                self._warn_once(attempt.adapter, "the server does not serve it")
                attempt.model, attempt.adapter = info.base_model, None
            except InputTooLong as e:
                if repacked or attempt.pieces:
                    raise
                repacked = True
                attempt.budget_tokens = _corrected_budget(attempt.budget_tokens, e)
            except GenerationServerError as e:
                if self._system_role and _refuses_system_role(e) and not attempt.pieces:
                    log.warning("the model's chat template has no system role: sending the rules in the user turn")
                    self._system_role = False
                    continue
                pause = self.options.backoff_s * 2 ** (self.options.retries - retries_left) * random.uniform(0.8, 1.2)
                if not e.retryable or attempt.pieces or retries_left <= 0 or time.monotonic() + pause >= deadline:
                    raise
                retries_left -= 1
                log.info("generation server: %s; retrying in %.1f s", e, pause)
                self._sleep(pause)
        timings = {"generate": (time.monotonic() - started) * 1000}
        if attempt.first_token_ms is not None:
            timings["first_token"] = attempt.first_token_ms
        return Draft(text="".join(attempt.pieces), generator=self.name, adapter=attempt.adapter,
                     passages_used=attempt.prompt.passages_used, timings_ms=timings)

    def _first_attempt(self, request: GenerationRequest, info: ServerInfo) -> _Attempt:
        adapter = self.adapters.adapter_for(request.conversation_id)
        if adapter is not None and time.monotonic() - self._missing.get(adapter, -1e9) < MISSING_ADAPTER_RECHECK_S:
            adapter = None  # refused a moment ago: spare every question the round trip
        room = min(info.max_input_tokens, info.max_total_tokens - self._answer_tokens(info))
        return _Attempt(model=adapter or info.base_model, adapter=adapter,
                        budget_tokens=int(room * self.options.budget_fraction))

    def _answer_tokens(self, info: ServerInfo) -> int:
        # A server configured with little room beyond its input still gets a prompt of half its total.
        return min(self.options.max_answer_tokens, max(16, info.max_total_tokens // 2))

    def _stream(self, attempt: _Attempt, info: ServerInfo, on_text: Callable[[str], None] | None,
                deadline: float) -> None:
        """Ask for the answer and collect it as it streams, passing each piece to ``on_text``."""
        o = self.options
        read_timeout = max(0.1, min(o.first_token_timeout_s, deadline - time.monotonic()))
        timeout = httpx2.Timeout(connect=o.connect_timeout_s, read=read_timeout, write=o.connect_timeout_s,
                                 pool=o.connect_timeout_s)
        # A client per answer: it holds the open stream, and closing it ends the stream cleanly.
        client = InferenceClient(base_url=info.url, token=o.token, timeout=timeout)
        sent = time.monotonic()
        finished = False
        try:
            stream = client.chat_completion(
                attempt.prompt.messages, model=attempt.model, stream=True, temperature=o.temperature,
                max_tokens=max(1, min(self._answer_tokens(info), info.max_total_tokens - attempt.prompt.estimated_tokens)),
            )
            for chunk in stream:
                choice = chunk.choices[0] if chunk.choices else None
                piece = (choice.delta.content or "") if choice and choice.delta else ""
                if piece:
                    if attempt.first_token_ms is None:
                        attempt.first_token_ms = (time.monotonic() - sent) * 1000
                    attempt.pieces.append(piece)
                    if on_text is not None:
                        on_text(piece)
                finished = finished or bool(choice and choice.finish_reason)
                if time.monotonic() > deadline:
                    raise GenerationTimeout(f"no finished answer within {o.total_timeout_s:.0f} s")
        except GenerationServerError:
            raise
        except Exception as e:
            raise _typed(e, attempt) from e
        finally:
            client.close()
        if not finished:
            raise GenerationFailed("the answer stream ended before the answer was finished")

    def _warn_once(self, adapter: str, why: str) -> None:
        if adapter not in self._warned_adapters:
            self._warned_adapters.add(adapter)
            log.warning("adapter %r: %s; answering with the base model", adapter, why)


def _typed(error: Exception, attempt: _Attempt) -> GenerationServerError:
    """A client-side exception as the typed error it means."""
    streaming = bool(attempt.pieces)
    if isinstance(error, TextGenerationError):  # an error event in the stream
        kind = next((k for cls, k in _STREAM_ERROR_TYPES.items() if isinstance(error, cls)), None)
        return error_from_payload(None, {"error": str(error), "error_type": kind}, requested_model=attempt.model)
    if isinstance(error, (InferenceTimeoutError, httpx2.TimeoutException)):
        if isinstance(error.__cause__ or error, httpx2.ConnectTimeout):
            return ServerUnavailable(f"could not connect to the generation server in time: {error}")
        return GenerationTimeout("the answer stalled" if streaming else "no first token in time")
    if isinstance(error, HfHubHTTPError) and error.response is not None:
        return error_from_payload(error.response.status_code, _body(error.response), requested_model=attempt.model)
    if isinstance(error, httpx2.TransportError):
        if streaming:
            return GenerationFailed(f"the connection broke while the answer streamed: {error}")
        return ServerUnavailable(f"cannot reach the generation server: {type(error).__name__}: {error}")
    return GenerationFailed(f"unexpected reply from the generation server: {type(error).__name__}: {error}")


def _body(response: httpx2.Response) -> object:
    try:
        response.read()
        return response.json()
    except Exception:
        try:
            return response.text
        except Exception:
            return None


def _corrected_budget(budget: int, error: InputTooLong) -> int:
    """The server counted more tokens than estimated: shrink the budget by its ratio, and a margin."""
    if error.limit and error.given and error.given > error.limit:
        return int(budget * error.limit / error.given * 0.9)
    return int(budget * 0.75)


def _refuses_system_role(error: GenerationServerError) -> bool:
    text = str(error).lower()
    return "system" in text and ("role" in text or "template" in text) and not isinstance(error, InputTooLong)
