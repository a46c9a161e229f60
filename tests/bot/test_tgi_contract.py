"""What lorebot relies on from a generation server, checked against the fake TGI and, when TGI_URL
is set, against that real server (TGI 2.x/3.x, or vLLM and the like): the same tests, so the fake
cannot drift from what real servers do without a test saying so.

    TGI_URL=http://gpu-box:8081 [HF_TOKEN=…] [LOREBOT_ADAPTER=lorebot-v0003] make test
"""

from __future__ import annotations

import os

import pytest

from bot.generation import GenerationRequest
from bot.generation.adapters import AdapterChoice
from bot.generation.server_errors import InputTooLong, error_from_payload
from bot.generation.tgi import TGIGenerator, TGIOptions
from huggingface_hub import InferenceClient
from huggingface_hub.errors import HfHubHTTPError
from knowledge.access import Scope
from knowledge.types import Passage
from tests.fakes.tgi_server import FakeTGI

# Read at import: tests/conftest.py clears TGI_URL for every test, so that no other test ever
# talks to the real server.
REAL_TGI = os.environ.get("TGI_URL")
REAL_TOKEN = os.environ.get("HF_TOKEN")
REAL_ADAPTER = os.environ.get("LOREBOT_ADAPTER")

PASSAGES = [Passage("leave", "leave:0", "Leave policy", "hr/leave.md", (), "Employees get 18 vacation days a year.",
                    Scope.public(), 1.0, 0.6)]


class GenerationServerContract:
    """Subclasses provide ``server_url`` (and ``adapter``: one the server serves, or None)."""

    adapter: str | None = None
    token: str | None = None

    def generator(self, server_url: str, **options) -> TGIGenerator:
        return TGIGenerator(TGIOptions(url=server_url, token=self.token, **options),
                            adapters=AdapterChoice(configured=self.adapter))

    def test_it_states_its_limits_and_is_healthy(self, server_url):
        info = self.generator(server_url).check()
        assert 0 < info.max_input_tokens < info.max_total_tokens or info.kind == "openai-compatible"
        assert info.model_id

    def test_a_streamed_chat_completion_answers_from_the_passages(self, server_url):
        pieces: list[str] = []
        request = GenerationRequest(question="How many vacation days do employees get?", passages=PASSAGES)
        draft = self.generator(server_url).generate(request, on_text=pieces.append)
        assert draft.text.strip() and draft.text == "".join(pieces)
        assert draft.passages_used == 1 and draft.adapter == self.adapter

    def test_an_over_long_prompt_is_refused_with_a_payload_that_maps_to_input_too_long(self, server_url):
        info = self.generator(server_url).check()
        client = InferenceClient(base_url=server_url, token=self.token, timeout=30)
        words = " ".join(["vacation"] * (info.max_total_tokens + 100))
        with pytest.raises(HfHubHTTPError) as refused:
            client.chat_completion([{"role": "user", "content": words}], model=info.base_model, max_tokens=8)
        response = refused.value.response
        error = error_from_payload(response.status_code, response.json())
        assert isinstance(error, InputTooLong) and error.limit and error.given > error.limit


class TestContractOnTheFake(GenerationServerContract):
    adapter = "lorebot-v1"

    @pytest.fixture
    def server_url(self):
        with FakeTGI(adapters=("lorebot-v1",)) as fake:
            yield fake.url


class TestContractOnAVLLMLikeFake(GenerationServerContract):
    @pytest.fixture
    def server_url(self):
        with FakeTGI(openai_only=True, max_input_tokens=2048, max_total_tokens=2048) as fake:
            yield fake.url


def test_the_contract_against_a_real_server_runs_when_tgi_url_is_set():
    if not REAL_TGI:  # one visible skip instead of one per contract test
        pytest.skip("set TGI_URL (and HF_TOKEN, LOREBOT_ADAPTER) to run the generation contract against a real server")


if REAL_TGI:
    class TestContractOnARealServer(GenerationServerContract):
        adapter = REAL_ADAPTER
        token = REAL_TOKEN

        @pytest.fixture
        def server_url(self):
            return REAL_TGI
