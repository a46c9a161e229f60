"""The TGI fake, driven by the real ``huggingface_hub.InferenceClient``."""

from __future__ import annotations

import time

import httpx
import httpx2
import pytest
from huggingface_hub import InferenceClient
from huggingface_hub.errors import (
    GenerationError,
    HfHubHTTPError,
    InferenceTimeoutError,
    OverloadedError,
    TextGenerationError,
)

from tests.fakes.tgi_server import DEFAULT_REPLY, FakeTGI

MESSAGES = [{"role": "system", "content": "Answer from the wiki."}, {"role": "user", "content": "What is 6 x 7?"}]


@pytest.fixture
def tgi():
    with FakeTGI(model_id="lorebot/base-model", adapters=("lorebot-v3",), max_input_tokens=64,
                 max_total_tokens=128) as server:
        yield server


_clients: list[InferenceClient] = []


def client(tgi: FakeTGI, **kw) -> InferenceClient:
    # Kept referenced: InferenceClient closes its open streams when it is garbage-collected, so a
    # stream from a temporary client (``client(tgi).chat_completion(..., stream=True)``) dies early.
    c = InferenceClient(base_url=tgi.url, timeout=kw.pop("timeout", 5), **kw)
    _clients.append(c)
    return c


def stream_text(chunks) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_chat_completion_plain_and_streamed(tgi):
    tgi.reply("The answer is 42 [1].", lambda body: f"echo: {body['messages'][-1]['content']}")
    out = client(tgi).chat_completion(MESSAGES, model="tgi", max_tokens=20)
    assert out.choices[0].message.content == "The answer is 42 [1]."
    assert out.choices[0].finish_reason == "stop"
    assert out.usage.prompt_tokens == FakeTGI.count_prompt_tokens(MESSAGES)

    chunks = list(client(tgi).chat_completion(MESSAGES, model="tgi", stream=True, max_tokens=20))
    assert stream_text(chunks) == "echo: What is 6 x 7?"
    assert len(chunks) > 3 and chunks[-1].choices[0].finish_reason == "stop"
    assert [c.choices[0].finish_reason for c in chunks[:-1]] == [None] * (len(chunks) - 1)

    body = tgi.chat_requests()[-1]
    assert body["stream"] is True and body["max_tokens"] == 20 and body["messages"] == MESSAGES
    assert tgi.requests[-1].headers["content-type"] == "application/json"


def test_default_reply_and_length_cut(tgi):
    chunks = list(client(tgi).chat_completion(MESSAGES, model="tgi", stream=True, max_tokens=3))
    assert stream_text(chunks) == " ".join(DEFAULT_REPLY.split(" ")[:3]) + " "
    assert chunks[-1].choices[0].finish_reason == "length"


def test_model_selects_base_or_adapter(tgi):
    c = client(tgi)
    assert c.chat_completion(MESSAGES, model="lorebot-v3", max_tokens=20).model == "lorebot-v3"
    assert c.chat_completion(MESSAGES, model="lorebot/base-model", max_tokens=20).model == "lorebot/base-model"
    list(c.chat_completion(MESSAGES, model="tgi", stream=True, max_tokens=20))
    assert [b["model"] for b in tgi.chat_requests()] == ["lorebot-v3", "lorebot/base-model", "tgi"]
    assert tgi.answered_by == ["lorebot-v3", "lorebot/base-model", "lorebot/base-model"]


def test_an_unknown_adapter_can_be_refused_like_servers_that_load_adapters_by_name():
    with FakeTGI(adapters=("lorebot-v3",), unknown_adapter="error") as tgi:
        with pytest.raises(HfHubHTTPError) as info:
            client(tgi).chat_completion(MESSAGES, model="lorebot-v9", stream=True, max_tokens=20)
        assert info.value.response.status_code == 422
        payload = info.value.response.json()
        assert payload["error_type"] == "validation" and "lorebot-v9" in payload["error"]
        assert tgi.answered_by == []


def test_an_unknown_adapter_gets_the_base_model_like_real_tgi(tgi):
    out = client(tgi).chat_completion(MESSAGES, model="lorebot-v9", max_tokens=20)
    assert out.model == tgi.model_id and tgi.answered_by == [tgi.model_id]


@pytest.mark.parametrize("status,error_type", [(429, "overloaded"), (503, "unavailable"), (424, "generation")])
def test_injected_http_errors(tgi, status, error_type):
    tgi.fail_next("/v1/chat/completions", status=status)
    with pytest.raises(HfHubHTTPError) as info:
        list(client(tgi).chat_completion(MESSAGES, model="tgi", stream=True, max_tokens=20))
    assert info.value.response.status_code == status
    assert info.value.response.json()["error_type"] == error_type
    # consumed: the next call works
    assert client(tgi).chat_completion(MESSAGES, model="tgi", max_tokens=20).choices[0].message.content


def test_text_generation_maps_tgi_error_types(tgi):
    tgi.fail_next("*", status=429)
    with pytest.raises(OverloadedError, match="Model is overloaded"):
        client(tgi).text_generation("hello", max_new_tokens=5)


def test_mid_stream_error_surfaces(tgi):
    tgi.reply("one two three four five")
    tgi.fail_mid_stream(after_tokens=2, error="Request failed during generation: CUDA OOM")
    got = []
    with pytest.raises(GenerationError, match="CUDA OOM"):
        for chunk in client(tgi).chat_completion(MESSAGES, model="tgi", stream=True, max_tokens=20):
            got.append(chunk.choices[0].delta.content)
    assert got == ["one ", "two "]


def test_info_and_health(tgi):
    info = httpx.get(f"{tgi.url}/info").json()
    assert info["model_id"] == "lorebot/base-model" and info["router"] == "text-generation-router"
    assert info["max_input_tokens"] == info["max_input_length"] == 64 and info["max_total_tokens"] == 128
    health = httpx.get(f"{tgi.url}/health")
    assert health.status_code == 200 and health.content == b""
    tgi.fail_next("/health", status=503)
    bad = httpx.get(f"{tgi.url}/health")
    assert bad.status_code == 503 and bad.json() == {"error": "unhealthy", "error_type": "healthcheck"}
    assert httpx.get(f"{tgi.url}/health").status_code == 200


def test_over_budget_prompts_get_422(tgi):
    long = [{"role": "user", "content": "word " * 70}]
    with pytest.raises(HfHubHTTPError) as info:
        client(tgi).chat_completion(long, model="tgi", max_tokens=10)
    assert info.value.response.status_code == 422
    assert info.value.response.json() == {
        "error": "Input validation error: `inputs` must have less than 64 tokens. Given: 73",
        "error_type": "validation"}
    n = FakeTGI.count_prompt_tokens(MESSAGES)
    with pytest.raises(HfHubHTTPError) as info:
        client(tgi).chat_completion(MESSAGES, model="tgi", max_tokens=128 - n + 1)
    assert "`inputs` tokens + `max_new_tokens` must be <= 128" in info.value.response.json()["error"]
    assert client(tgi).chat_completion(MESSAGES, model="tgi", max_tokens=128 - n).choices


def test_text_generation_stream_with_adapter(tgi):
    tgi.reply("alpha beta gamma")
    tokens = list(client(tgi).text_generation("hello there", stream=True, max_new_tokens=10, adapter_id="lorebot-v3"))
    assert "".join(tokens) == "alpha beta gamma"
    assert tgi.generate_requests()[-1]["parameters"]["adapter_id"] == "lorebot-v3"
    assert (tgi.requests[-1].path, tgi.requests[-1].json["stream"]) == ("/", True)  # TGI compat route
    assert tgi.answered_by == ["lorebot-v3"]
    # /generate_stream directly, details in the final event
    with httpx.stream("POST", f"{tgi.url}/generate_stream",
                      json={"inputs": "hi", "parameters": {"max_new_tokens": 50, "details": True}}) as r:
        events = [line for line in r.iter_lines() if line.startswith("data:")]
    assert '"generated_text": null' in events[0] and '"finish_reason": "eos_token"' in events[-1]


def test_slow_first_token_and_timeouts(tgi):
    tgi.delay_first_token(1.0)
    with pytest.raises(InferenceTimeoutError):
        client(tgi, timeout=0.3).chat_completion(MESSAGES, model="tgi", max_tokens=20)
    # streamed: headers come at once, the read timeout hits while iterating and is NOT wrapped
    stream = client(tgi, timeout=0.3).chat_completion(MESSAGES, model="tgi", stream=True, max_tokens=20)
    with pytest.raises(httpx2.ReadTimeout):
        list(stream)
    tgi.delay_first_token(0)
    tgi.stall_after_tokens(2, 0.4)
    start = time.monotonic()
    list(client(tgi).chat_completion(MESSAGES, model="tgi", stream=True, max_tokens=20))
    assert time.monotonic() - start >= 0.35
    tgi.stall_after_tokens(2, 0)


def test_down_server_refuses_quickly(tgi):
    tgi.set_down(True)
    start = time.monotonic()
    with pytest.raises(httpx2.ConnectError):
        client(tgi).chat_completion(MESSAGES, model="tgi", max_tokens=20)
    assert time.monotonic() - start < 2
    tgi.set_down(False)
    assert client(tgi).chat_completion(MESSAGES, model="tgi", max_tokens=20).choices


def test_count_tokens():
    assert FakeTGI.count_tokens("Hello, world!") == 4
    assert FakeTGI.count_tokens("") == 0


def test_text_generation_error_classes_are_http_errors():
    assert issubclass(OverloadedError, TextGenerationError)


def test_each_chat_completion_records_its_wall_clock_timing(tgi):
    tgi.tokens_per_second = 100
    before = time.time()
    chunks = list(client(tgi).chat_completion(MESSAGES, model="tgi", stream=True, max_tokens=20))
    client(tgi).chat_completion(MESSAGES, model="lorebot-v3", max_tokens=20)
    tgi.fail_next("/v1/chat/completions", 429)
    with pytest.raises(HfHubHTTPError):
        client(tgi).chat_completion(MESSAGES, model="tgi", max_tokens=20)
    streamed, plain, failed = tgi.completions
    assert stream_text(chunks) == DEFAULT_REPLY and streamed["tokens"] == len(DEFAULT_REPLY.split())
    assert streamed["stream"] and streamed["model"] == "lorebot/base-model"
    # Seven tokens at 100/s: the last goes out ~60 ms after the first.
    assert before <= streamed["received"] <= streamed["first_token_sent"] < streamed["last_token_sent"]
    assert streamed["last_token_sent"] - streamed["first_token_sent"] >= 0.05
    assert not plain["stream"] and plain["model"] == "lorebot-v3"
    assert plain["first_token_sent"] == plain["last_token_sent"] >= plain["received"] >= streamed["last_token_sent"]
    assert failed["first_token_sent"] is None and failed["tokens"] == 0
