"""A local Hugging Face text-generation-inference (TGI 2.x/3.x) for tests: a real HTTP server that
the real ``huggingface_hub.InferenceClient(base_url=...)`` talks to.

It plays the TGI router's HTTP surface closely enough for a generator's code paths: ``GET /health``,
``GET /info``, ``POST /generate``, ``POST /generate_stream``, ``POST /`` (TGI's compat route, which
``InferenceClient.text_generation`` uses: ``"stream": true`` means generate_stream) and
``POST /v1/chat/completions`` (OpenAI-compatible, plain or SSE), with TGI's error payloads
``{"error": "...", "error_type": "..."}``, TGI's input validation (422), LoRA adapters selected by the
chat ``model`` field / ``parameters.adapter_id``, and faults (injected HTTP errors, mid-stream SSE
errors, slowness, a server that is down).

    with FakeTGI(adapters=("lorebot-v3",)) as tgi:
        tgi.reply("The answer is 42 [1].")
        client = InferenceClient(base_url=tgi.url)
        out = client.chat_completion([{"role": "user", "content": "hi"}], model="lorebot-v3", max_tokens=50)
        assert out.choices[0].message.content == "The answer is 42 [1]."
        assert tgi.answered_by == ["lorebot-v3"]

Only 127.0.0.1 is ever bound or referenced. Recorded :class:`Request` headers have lower-cased names.

Fidelity notes (checked against huggingface/text-generation-inference ``router/src``):

* Error bodies, statuses and messages follow ``InferError`` (``router/src/infer/mod.rs``) and its
  ``From<InferError> for (StatusCode, Json<ErrorResponse>)`` (``router/src/server.rs``):
  generation -> 424 ``"Request failed during generation: ..."``, overloaded -> 429
  ``"Model is overloaded"``, validation -> 422 ``"Input validation error: ..."``,
  incomplete_generation -> 500. Mid-stream errors are an SSE ``data: {"error", "error_type"}`` event.
* Unknown adapters: real TGI does **not** reject them. The router copies the chat ``model`` into
  ``adapter_id`` unless it is ``"tgi"`` (``router/src/lib.rs``: ``model.filter(|m| *m != "tgi")``),
  and the Python shard looks it up with ``ADAPTER_TO_INDEX.get(adapter_id, 0)``, i.e. it silently
  answers with the base model. The default ``unknown_adapter="base"`` reproduces that;
  ``unknown_adapter="error"`` plays a server that refuses an adapter it does not have (as
  OpenAI-compatible servers that load adapters by name do), answering 422
  ``{"error": "Input validation error: adapter `X` is not loaded ...", "error_type": "validation"}``,
  so tests can see a misrouted adapter. The base ``model_id`` is treated as "the base model" here
  (real TGI would pass it as an adapter id and fall back to base, same result).
* The chat response's ``model`` field names the model that answered (adapter name or ``model_id``).
  That is a test convenience: real TGI reports its own ``model_id`` there.
* Tokens: :meth:`FakeTGI.count_tokens` is the fake's tokenizer (documented there); generated text is
  streamed in whitespace-delimited pieces, each one counted as one generated token.
* Timing: :attr:`FakeTGI.completions` holds one wall-clock record per ``/v1/chat/completions``
  request (when it was received, when its first and last tokens went out), for benchmarks that
  line the fake's events up with another fake's (``FakeSlackAPI``'s ``Call.at`` is also ``time.time()``).
* ``set_down(True)`` closes the listening socket: new connections are *refused* (ECONNREFUSED).
  ``set_down(False)`` re-binds the same port.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

DEFAULT_REPLY = "Lorebot found the answer in the wiki [1]."
TGI_VERSION = "3.0.1"
_TOKEN_RE = re.compile(r"\w+|[^\w\s]")
_PIECE_RE = re.compile(r"\S+\s*|\s+")

# status -> (default message, default error_type), as TGI's router would word them.
_DEFAULT_ERRORS: dict[int, tuple[str, str | None]] = {
    422: ("Input validation error: invalid request", "validation"),
    424: ("Request failed during generation: injected fault", "generation"),
    429: ("Model is overloaded", "overloaded"),
    500: ("Incomplete generation", "incomplete_generation"),
    503: ("Service Unavailable", "unavailable"),
}

Reply = str | Callable[[dict], str]


@dataclass
class Request:
    """One HTTP request as the fake received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    json: Any = None
    time: float = field(default_factory=time.monotonic)
    # The same moment on the wall clock (a lambda: in this class body ``time`` is the field above).
    wall: float = field(default_factory=lambda: time.time())


@dataclass
class _Fault:
    path: str
    status: int
    error: str
    error_type: str | None
    times: int


class _Stop(Exception):
    """The fake is stopping or the client went away: abandon the response."""


class FakeTGI:
    """A TGI router on ``127.0.0.1:<free port>``; use as a context manager.

    Settings (``delay_first_token``, ``stall_after_tokens``, ``tokens_per_second``) stay until
    changed; ``reply`` and ``fail_next``/``fail_mid_stream`` are consumed one completion at a time.
    """

    def __init__(
        self,
        model_id: str = "lorebot/base-model",
        adapters: Sequence[str] = (),
        max_input_tokens: int = 1024,
        max_total_tokens: int = 2048,
        tokens_per_second: float | None = None,
        unknown_adapter: str = "base",
        max_concurrent_requests: int = 128,
        openai_only: bool = False,
    ) -> None:
        if unknown_adapter not in ("error", "base"):
            raise ValueError("unknown_adapter must be 'error' or 'base'")
        # Plays vLLM instead of TGI: no /info; /v1/models lists the base model (with its
        # max_model_len) and the loaded adapters; a model it does not serve is a 404.
        self.openai_only = openai_only
        self.model_id = model_id
        self.adapters = tuple(adapters)
        self.max_input_tokens = max_input_tokens
        self.max_total_tokens = max_total_tokens
        self.tokens_per_second = tokens_per_second
        self.unknown_adapter = unknown_adapter
        self.max_concurrent_requests = max_concurrent_requests
        self.requests: list[Request] = []
        self.answered_by: list[str] = []
        # One record per /v1/chat/completions request, in arrival order, on the wall clock
        # (time.time()), filled in as its response goes out (see :meth:`_Handler._chat`):
        # ``received`` (the request read), ``first_token_sent`` / ``last_token_sent`` (the event
        # carrying the first / last generated token written and flushed; for a non-streamed answer
        # both are when the response was written; None when no token went out: a fault, a
        # validation error, an empty answer), ``tokens`` (generated), ``stream``, ``model``.
        self.completions: list[dict[str, Any]] = []
        self._replies: deque[Reply] = deque()
        self._faults: list[_Fault] = []
        self._mid_stream: deque[tuple[int, str, str | None]] = deque()
        self._first_token_delay = 0.0
        self._stall: tuple[int, float] | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port: int = 0

    # ---------------------------------------------------------------- lifecycle

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FakeTGI:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._stopping.clear()
        self._bind(self.port)

    def stop(self) -> None:
        self._stopping.set()
        self._unbind()

    def _bind(self, port: int) -> None:
        fake = self

        class Handler(_Handler):
            tgi = fake

        server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        server.daemon_threads = True
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"FakeTGI:{self.port}", daemon=True)
        self._thread.start()

    def _unbind(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def set_down(self, down: bool = True) -> None:
        """``True``: close the listening socket, so connects get ECONNREFUSED (streams in flight
        are cut too). ``False``: listen again on the same port."""
        if down:
            self._stopping.set()
            self._unbind()
        elif self._server is None:
            self._stopping.clear()
            self._bind(self.port)

    # ---------------------------------------------------------------- scripting

    def reply(self, *replies: Reply) -> None:
        """Queue what the next completions produce: text, or ``f(request_json) -> text``."""
        with self._lock:
            self._replies.extend(replies)

    def fail_next(self, path: str = "*", status: int = 503, error: str | None = None,
                  error_type: str | None = "", times: int = 1) -> None:
        """The next ``times`` requests to ``path`` (or any, ``"*"``) answer ``status`` with TGI's
        ``{"error", "error_type"}`` body. ``error``/``error_type`` default per status (429 ->
        ``"Model is overloaded"``/``"overloaded"``...); ``error_type=None`` leaves the key out.
        ``/health`` failures answer TGI's ``{"error": "unhealthy", "error_type": "healthcheck"}``."""
        default_error, default_type = _DEFAULT_ERRORS.get(status, (f"HTTP {status}", None))
        if path == "/health":
            default_error, default_type = "unhealthy", "healthcheck"
        with self._lock:
            self._faults.append(_Fault(path, status, error if error is not None else default_error,
                                       default_type if error_type == "" else error_type, times))

    def fail_mid_stream(self, after_tokens: int, error: str = "Request failed during generation: CUDA error",
                        error_type: str | None = "generation") -> None:
        """The next streamed completion sends ``after_tokens`` tokens, then the SSE event
        ``data: {"error": ..., "error_type": ...}`` and ends (no final chunk, no ``[DONE]``)."""
        with self._lock:
            self._mid_stream.append((after_tokens, error, error_type))

    def delay_first_token(self, seconds: float) -> None:
        """Wait this long before the first token (streamed: after the 200 headers; not streamed:
        before the response). ``0`` turns it off."""
        self._first_token_delay = seconds

    def stall_after_tokens(self, n: int, seconds: float) -> None:
        """Pause ``seconds`` after the ``n``-th token of every stream. ``seconds=0`` turns it off."""
        self._stall = (n, seconds) if seconds > 0 else None

    # ---------------------------------------------------------------- inspection

    def chat_requests(self) -> list[dict]:
        return [r.json for r in self.requests if r.path == "/v1/chat/completions" and r.method == "POST"]

    def generate_requests(self) -> list[dict]:
        return [r.json for r in self.requests
                if r.method == "POST" and r.path in ("/", "/generate", "/generate_stream")]

    @staticmethod
    def count_tokens(text: str) -> int:
        """The fake's tokenizer: one token per run of word characters (``\\w+``) and one per other
        non-space character. ``"Hello, world!"`` is 4 tokens."""
        return len(_TOKEN_RE.findall(text or ""))

    @classmethod
    def count_prompt_tokens(cls, messages: Iterable[dict]) -> int:
        """Chat prompt size as validated: per message, its text tokens plus 3 for the chat template
        (role header and separators)."""
        total = 0
        for message in messages:
            content = message.get("content")
            if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]
                content = " ".join(part.get("text", "") for part in content if isinstance(part, dict))
            total += cls.count_tokens(content or "") + 3
        return total

    def info(self) -> dict:
        return {
            "model_id": self.model_id,
            "model_sha": "0" * 40,
            "model_dtype": "torch.bfloat16",
            "model_device_type": "cuda",
            "model_pipeline_tag": "text-generation",
            "max_concurrent_requests": self.max_concurrent_requests,
            "max_best_of": 2,
            "max_stop_sequences": 4,
            "max_input_tokens": self.max_input_tokens,
            "max_input_length": self.max_input_tokens,
            "max_total_tokens": self.max_total_tokens,
            "validation_workers": 2,
            "max_client_batch_size": 4,
            "router": "text-generation-router",
            "version": TGI_VERSION,
            "sha": None,
            "docker_label": None,
            # TGI 2.x/3.x also report these; harmless extras for clients that read them.
            "waiting_served_ratio": 0.3,
            "max_batch_total_tokens": self.max_total_tokens * 8,
            "max_waiting_tokens": 20,
            "max_batch_size": None,
        }

    def models(self) -> dict:
        """``GET /v1/models``: TGI lists only its base model (never its adapters); vLLM
        (``openai_only``) lists the base with its ``max_model_len``, then its LoRA adapters."""
        if not self.openai_only:
            return {"object": "list", "data": [{"id": self.model_id, "object": "model", "created": 0,
                                                "owned_by": self.model_id}]}
        base = {"id": self.model_id, "object": "model", "owned_by": "vllm", "root": self.model_id,
                "parent": None, "max_model_len": self.max_total_tokens}
        loras = [{"id": name, "object": "model", "owned_by": "vllm", "root": f"/adapters/{name}",
                  "parent": self.model_id, "max_model_len": None} for name in self.adapters]
        return {"object": "list", "data": [base, *loras]}

    # ---------------------------------------------------------------- internals used by the handler

    def _take_fault(self, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.path in ("*", path):
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def _next_reply(self, body: dict) -> str:
        with self._lock:
            reply = self._replies.popleft() if self._replies else DEFAULT_REPLY
        return reply(body) if callable(reply) else reply

    def _take_mid_stream(self) -> tuple[int, str, str | None] | None:
        with self._lock:
            return self._mid_stream.popleft() if self._mid_stream else None

    def _resolve_model(self, name: str | None) -> str | None:
        """The model that answers for a chat ``model`` / ``adapter_id``; ``None`` = unknown adapter."""
        if name in (None, "", self.model_id) or (name == "tgi" and not self.openai_only):
            return self.model_id
        if name in self.adapters:
            return name
        return self.model_id if self.unknown_adapter == "base" and not self.openai_only else None

    def _sleep(self, seconds: float) -> None:
        if seconds > 0 and self._stopping.wait(seconds):
            raise _Stop


class _Handler(BaseHTTPRequestHandler):
    tgi: FakeTGI
    protocol_version = "HTTP/1.0"  # one request per connection; streams end when the socket closes
    server_version = "text-generation-router"

    def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
        pass

    # ------------------------------------------------------------ plumbing

    def _record(self) -> Request:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        request = Request(self.command, urlsplit(self.path).path,
                          {k.lower(): v for k, v in self.headers.items()}, body, parsed)
        with self.tgi._lock:
            self.tgi.requests.append(request)
        return request

    def _send_json(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_error(self, status: int, error: Any, error_type: str | None) -> None:
        payload: dict[str, Any] = {"error": error}
        if error_type is not None:
            payload["error_type"] = error_type
        self._send_json(status, payload)

    def _start_sse(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        self.wfile.flush()

    def _event(self, payload: Any) -> None:
        data = payload if isinstance(payload, str) else json.dumps(payload)
        try:
            self.wfile.write(f"data: {data}\n\n".encode())
            self.wfile.flush()
        except OSError as exc:  # client went away
            raise _Stop from exc

    # ------------------------------------------------------------ routing

    def do_GET(self) -> None:
        request = self._record()
        fault = self.tgi._take_fault(request.path)
        if fault is not None:
            return self._send_error(fault.status, fault.error, fault.error_type)
        if request.path == "/health":
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif request.path == "/info" and not self.tgi.openai_only:
            self._send_json(200, self.tgi.info())
        elif request.path == "/v1/models":
            self._send_json(200, self.tgi.models())
        else:
            self._send_json(404, {"error": "Not Found", "error_type": "not_found"})

    def do_POST(self) -> None:
        request = self._record()
        timing = self._timing(request) if request.path == "/v1/chat/completions" else None
        try:
            fault = self.tgi._take_fault(request.path)
            if fault is not None:
                return self._send_error(fault.status, fault.error, fault.error_type)
            body = request.json if isinstance(request.json, dict) else None
            if body is None:
                return self._send_error(422, "Failed to deserialize the JSON body into the target type", "validation")
            if request.path == "/v1/chat/completions":
                self._chat(body, timing)
            elif request.path == "/generate":
                self._generate(body, stream=False)
            elif request.path == "/generate_stream":
                self._generate(body, stream=True)
            elif request.path == "/":
                self._generate(body, stream=bool(body.get("stream")))
            else:
                self._send_json(404, {"error": "Not Found", "error_type": "not_found"})
        except _Stop:
            self.close_connection = True

    # ------------------------------------------------------------ generation

    def _validate(self, input_tokens: int, max_new_tokens: int | None) -> str | None:
        tgi = self.tgi
        if input_tokens > tgi.max_input_tokens:
            return (f"Input validation error: `inputs` must have less than {tgi.max_input_tokens} tokens. "
                    f"Given: {input_tokens}")
        if max_new_tokens is not None and input_tokens + max_new_tokens > tgi.max_total_tokens:
            return (f"Input validation error: `inputs` tokens + `max_new_tokens` must be <= {tgi.max_total_tokens}. "
                    f"Given: {input_tokens} `inputs` tokens and {max_new_tokens} `max_new_tokens`")
        return None

    def _model_or_error(self, name: str | None) -> str | None:
        model = self.tgi._resolve_model(name)
        if model is None and self.tgi.openai_only:
            self._send_json(404, {"object": "error", "message": f"The model `{name}` does not exist.",
                                  "type": "NotFoundError", "param": None, "code": 404})
        elif model is None:
            self._send_error(422, f"Input validation error: adapter `{name}` is not loaded "
                                  f"(known: {', '.join(self.tgi.adapters) or 'none'})", "validation")
        return model

    def _pieces(self, body: dict, max_new_tokens: int) -> tuple[list[str], str]:
        text = self.tgi._next_reply(body)
        pieces = _PIECE_RE.findall(text)
        if len(pieces) > max_new_tokens:
            return pieces[:max_new_tokens], "length"
        return pieces, "stop"

    def _pace(self, index: int) -> None:
        """Before token ``index`` (0-based) is sent."""
        tgi = self.tgi
        if index == 0:
            tgi._sleep(tgi._first_token_delay)
        elif tgi.tokens_per_second:
            tgi._sleep(1.0 / tgi.tokens_per_second)
        if tgi._stall is not None and index == tgi._stall[0] and index > 0:
            tgi._sleep(tgi._stall[1])

    def _timing(self, request: Request) -> dict[str, Any]:
        """Start the wall-clock record of a chat completion (see ``FakeTGI.completions``)."""
        body = request.json if isinstance(request.json, dict) else {}
        timing: dict[str, Any] = {"received": request.wall, "first_token_sent": None, "last_token_sent": None,
                                  "tokens": 0, "stream": bool(body.get("stream")), "model": None}
        with self.tgi._lock:
            self.tgi.completions.append(timing)
        return timing

    def _chat(self, body: dict, timing: dict[str, Any] | None = None) -> None:
        tgi = self.tgi
        timing = timing if timing is not None else {}
        messages = body.get("messages") or []
        model = self._model_or_error(body.get("model"))
        if model is None:
            return
        input_tokens = FakeTGI.count_prompt_tokens(messages)
        max_tokens = body.get("max_tokens")
        problem = self._validate(input_tokens, max_tokens)
        if problem and tgi.openai_only:  # vLLM's wording and shape
            requested = input_tokens + (max_tokens or 0)
            return self._send_json(400, {
                "object": "error", "type": "BadRequestError", "param": None, "code": 400,
                "message": f"This model's maximum context length is {tgi.max_total_tokens} tokens. However, you "
                           f"requested {requested} tokens ({input_tokens} in the messages, {max_tokens or 0} in the "
                           "completion). Please reduce the length of the messages or completion."})
        if problem:
            return self._send_error(422, problem, "validation")
        budget = max_tokens if max_tokens is not None else tgi.max_total_tokens - input_tokens
        pieces, finish = self._pieces(body, budget)
        with tgi._lock:
            tgi.answered_by.append(model)
        timing.update(model=model)
        created = int(time.time())
        fingerprint = f"{TGI_VERSION}-sha-0000000"
        usage = {"prompt_tokens": input_tokens, "completion_tokens": len(pieces),
                 "total_tokens": input_tokens + len(pieces)}
        if not body.get("stream"):
            for i in range(len(pieces)):
                self._pace(i)
            self._send_json(200, {
                "object": "chat.completion", "id": "", "created": created, "model": model,
                "system_fingerprint": fingerprint,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(pieces)},
                             "logprobs": None, "finish_reason": finish}],
                "usage": usage,
            })
            if pieces:
                sent = time.time()
                timing.update(first_token_sent=sent, last_token_sent=sent, tokens=len(pieces))
            return
        mid = tgi._take_mid_stream()
        self._start_sse()

        def chunk(delta: dict, finish_reason: str | None, usage_: dict | None = None) -> dict:
            return {"object": "chat.completion.chunk", "id": "", "created": created, "model": model,
                    "system_fingerprint": fingerprint,
                    "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
                    "usage": usage_}

        for i, piece in enumerate(pieces):
            if mid is not None and i == mid[0]:
                return self._mid_stream_error(mid)
            self._pace(i)
            last = i == len(pieces) - 1
            self._event(chunk({"role": "assistant", "content": piece}, finish if last else None))
            sent = time.time()
            if i == 0:
                timing["first_token_sent"] = sent
            timing.update(last_token_sent=sent, tokens=i + 1)
        if mid is not None:
            return self._mid_stream_error(mid)
        if not pieces:
            self._event(chunk({"role": "assistant", "content": ""}, finish))
        if (body.get("stream_options") or {}).get("include_usage"):
            self._event({"object": "chat.completion.chunk", "id": "", "created": created, "model": model,
                         "system_fingerprint": fingerprint, "choices": [], "usage": usage})
        self._event("[DONE]")

    def _mid_stream_error(self, mid: tuple[int, str, str | None]) -> None:
        payload: dict[str, Any] = {"error": mid[1]}
        if mid[2] is not None:
            payload["error_type"] = mid[2]
        self._event(payload)

    def _generate(self, body: dict, stream: bool) -> None:
        tgi = self.tgi
        params = body.get("parameters") or {}
        model = self._model_or_error(params.get("adapter_id"))
        if model is None:
            return
        inputs = body.get("inputs") or ""
        input_tokens = FakeTGI.count_tokens(inputs)
        max_new = params.get("max_new_tokens")
        problem = self._validate(input_tokens, max_new)
        if problem:
            return self._send_error(422, problem, "validation")
        pieces, finish = self._pieces(body, max_new if max_new is not None else 100)
        with tgi._lock:
            tgi.answered_by.append(model)
        text = "".join(pieces)
        details = {"finish_reason": "length" if finish == "length" else "eos_token",
                   "generated_tokens": len(pieces), "seed": params.get("seed")}
        if not stream:
            for i in range(len(pieces)):
                self._pace(i)
            out: dict[str, Any] = {"generated_text": (inputs + text) if params.get("return_full_text") else text}
            if params.get("details"):
                out["details"] = {**details, "prefill": [], "tokens": [
                    {"id": i + 1, "text": p, "logprob": -0.1, "special": False} for i, p in enumerate(pieces)]}
            return self._send_json(200, out)
        mid = tgi._take_mid_stream()
        self._start_sse()
        for i, piece in enumerate(pieces):
            if mid is not None and i == mid[0]:
                return self._mid_stream_error(mid)
            self._pace(i)
            last = i == len(pieces) - 1
            self._event({"index": i + 1, "token": {"id": i + 1, "text": piece, "logprob": -0.1, "special": False},
                         "generated_text": text if last else None,
                         "details": details if last and params.get("details") else None,
                         "top_tokens": None})
        if mid is not None:
            self._mid_stream_error(mid)
