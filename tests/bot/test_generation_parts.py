"""The pieces behind the TGI generator: error mapping, the circuit breaker, the token budget."""

from __future__ import annotations

import random

import pytest

from bot.generation.breaker import CircuitBreaker
from bot.generation.prompt import CUT_MARK, build_prompt, estimate_messages, estimate_tokens
from bot.generation.server_errors import (
    AdapterNotFound,
    GenerationFailed,
    InputTooLong,
    ServerOverloaded,
    ServerRefused,
    ServerUnavailable,
    error_from_payload,
)
from knowledge.access import Scope
from knowledge.types import Passage
from tests.fakes.tgi_server import FakeTGI


@pytest.mark.parametrize(("status", "payload", "expected"), [
    (429, {"error": "Model is overloaded", "error_type": "overloaded"}, ServerOverloaded),
    (None, {"error": "Model is overloaded", "error_type": "overloaded"}, ServerOverloaded),
    (503, {"error": "unhealthy", "error_type": "healthcheck"}, ServerUnavailable),
    (502, "<html>Bad Gateway</html>", ServerUnavailable),
    (424, {"error": "Request failed during generation: CUDA out of memory", "error_type": "generation"},
     GenerationFailed),
    (500, {"error": "Incomplete generation", "error_type": "incomplete_generation"}, GenerationFailed),
    (422, {"error": "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096. Given: 3900 "
                    "`inputs` tokens and 512 `max_new_tokens`", "error_type": "validation"}, InputTooLong),
    (400, {"object": "error", "message": "This model's maximum context length is 4096 tokens. However, you "
                                         "requested 4500 tokens (4000 in the messages, 500 in the completion).",
           "type": "BadRequestError", "code": 400}, InputTooLong),
    (404, {"error": {"message": "The model `ops-v2` does not exist", "type": "invalid_request_error"}},
     AdapterNotFound),
    (422, {"error": "Input validation error: adapter `ops-v2` is not loaded", "error_type": "validation"},
     AdapterNotFound),
    (401, {"error": "Authorization header is invalid"}, ServerRefused),
    (422, {"error": "Input validation error: `temperature` must be strictly positive", "error_type": "validation"},
     ServerRefused),
])
def test_server_errors_map_to_types_the_generator_acts_on(status, payload, expected):
    error = error_from_payload(status, payload, requested_model="ops-v2")
    assert type(error) is expected
    assert str(status or "stream") in str(error)


def test_retryable_and_server_fault_follow_the_type():
    assert error_from_payload(429, {}).retryable and error_from_payload(503, {}).retryable
    assert not error_from_payload(424, {}).retryable
    too_long = error_from_payload(422, {"error": "Input validation error: `inputs` must have less than 10 tokens. "
                                                 "Given: 12", "error_type": "validation"})
    assert (too_long.limit, too_long.given, too_long.server_fault) == (10, 12, False)


def test_the_breaker_opens_after_failures_refuses_until_the_cooldown_then_allows_one_trial():
    now = [0.0]
    breaker = CircuitBreaker(failures=3, cooldown_s=30, clock=lambda: now[0])
    for _ in range(2):
        assert breaker.allow()
        breaker.record_failure()
    assert breaker.state == "closed"
    breaker.record_failure()
    assert breaker.state == "open" and not breaker.allow()
    now[0] = 29.0
    assert not breaker.allow() and breaker.seconds_until_trial() == pytest.approx(1.0)
    now[0] = 30.0
    assert breaker.allow() and not breaker.allow()  # one trial at a time
    breaker.record_failure()  # the trial failed: another full cooldown
    assert breaker.state == "open"
    now[0] = 60.0
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state == "closed" and breaker.allow() and breaker.allow()


def test_a_success_resets_the_count_of_failures_in_a_row():
    breaker = CircuitBreaker(failures=2, cooldown_s=30, clock=lambda: 0.0)
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    assert breaker.state == "closed"


WORDS = ("vacation policy 401(k) matching 18 days contractors Lumenfold on-call escalation café naïve "
         "résumé — “quoted” <tag> $30,000 2024-11-23 e-mail a.b@c.io https://x.example/p?q=1 ✓ 東京").split()


def random_text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)) + rng.choice([".", "?", "!\n\n", ""])


def test_the_estimate_never_counts_fewer_tokens_than_the_fakes_tokenizer():
    rng = random.Random(7)
    for _ in range(300):
        text = random_text(rng, rng.randint(1, 80))
        assert estimate_tokens(text) >= FakeTGI.count_tokens(text), text
    messages = [{"role": "system", "content": "Rules."}, {"role": "user", "content": random_text(rng, 40)}]
    assert estimate_messages(messages) >= FakeTGI.count_prompt_tokens(messages)


def test_packing_stays_within_the_budget_for_any_mix_of_passages_and_history():
    from bot.generation import Turn

    rng = random.Random(11)
    for _ in range(100):
        passages = [Passage(f"d{i}", f"d{i}:0", random_text(rng, 4), f"s{i}.md", (), random_text(rng, rng.randint(5, 400)),
                            Scope.public(), 1.0, 0.5) for i in range(rng.randint(1, 10))]
        history = tuple(Turn(rng.choice(["user", "assistant"]), random_text(rng, rng.randint(1, 200)))
                        for _ in range(rng.randint(0, 6)))
        budget = rng.randint(400, 3000)
        prompt = build_prompt(random_text(rng, rng.randint(3, 30)), passages, history=history, budget_tokens=budget)
        assert prompt.estimated_tokens <= budget
        assert FakeTGI.count_prompt_tokens(prompt.messages) <= budget
        if prompt.last_passage_cut:
            assert CUT_MARK.strip() in prompt.messages[-1]["content"]
