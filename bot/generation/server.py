"""What a generation server is and can take: read once from its own endpoints.

TGI (2.x/3.x) says it all in ``GET /info`` (``max_input_tokens``, ``max_total_tokens``); other
servers with the same chat API (vLLM, SGLang, LoRAX) list their models in ``GET /v1/models``
(vLLM also gives ``max_model_len``, and lists its loaded LoRA adapters there). ``GET /health``
says whether the model is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx2
from huggingface_hub.utils import build_hf_headers, get_session

from bot.generation.server_errors import ServerRefused, ServerUnavailable

# Used when a server states no limits: small enough for any current chat model.
FALLBACK_CONTEXT_TOKENS = 4096


@dataclass(frozen=True)
class ServerInfo:
    url: str
    kind: str  # "tgi" or "openai-compatible"
    model_id: str
    # What the chat request's ``model`` names to get the base model: TGI reserves "tgi" for it.
    base_model: str
    max_input_tokens: int
    max_total_tokens: int
    version: str | None = None

    def describe(self) -> str:
        return (f"{self.kind} {self.version or ''} at {self.url}, model {self.model_id}, "
                f"max input {self.max_input_tokens} / total {self.max_total_tokens} tokens").replace("  ", " ")


def probe_server(url: str, *, token: str | None, timeout_s: float) -> ServerInfo:
    """The server's identity and limits; :class:`ServerUnavailable` if it is down or not ready."""
    base = url.rstrip("/").removesuffix("/v1")
    headers = build_hf_headers(token=token)

    def get(path: str) -> httpx2.Response:
        try:
            return get_session().get(base + path, headers=headers, timeout=timeout_s)
        except httpx2.HTTPError as e:
            raise ServerUnavailable(f"cannot reach the generation server at {url} (TGI_URL): "
                                    f"{type(e).__name__}: {e}") from e

    health = get("/health")
    if health.status_code in (401, 403):
        raise ServerRefused(f"the generation server at {url} refused lorebot's token (HF_TOKEN): "
                            f"HTTP {health.status_code}", status=health.status_code)
    if health.status_code != 200:
        raise ServerUnavailable(f"the generation server at {url} is not ready: /health answered "
                                f"HTTP {health.status_code}", status=health.status_code)
    info = _json_or_none(get("/info"))
    listed, max_model_len = _listed_models(_json_or_none(get("/v1/models")))
    if info and info.get("model_id"):
        max_input = int(info.get("max_input_tokens") or info.get("max_input_length") or FALLBACK_CONTEXT_TOKENS - 1)
        max_total = int(info.get("max_total_tokens") or max_input + 1)
        return ServerInfo(url=url, kind="tgi", model_id=str(info["model_id"]), base_model="tgi",
                          max_input_tokens=max_input, max_total_tokens=max_total, version=info.get("version"))
    if not listed:
        raise ServerRefused(f"{url} does not look like a generation server: neither /info (TGI) nor "
                            "/v1/models (OpenAI-compatible) answered")
    total = max_model_len or FALLBACK_CONTEXT_TOKENS
    # vLLM lists the base model first, then the LoRA adapters it has loaded.
    return ServerInfo(url=url, kind="openai-compatible", model_id=listed[0], base_model=listed[0],
                      max_input_tokens=total - 1, max_total_tokens=total)


def _json_or_none(response: httpx2.Response) -> dict | None:
    if response.status_code != 200:
        return None
    try:
        data = response.json()
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _listed_models(data: dict | None) -> tuple[list[str], int | None]:
    models = [m for m in (data or {}).get("data") or [] if isinstance(m, dict) and m.get("id")]
    lengths = [int(m["max_model_len"]) for m in models if isinstance(m.get("max_model_len"), int)]
    return [str(m["id"]) for m in models], (min(lengths) if lengths else None)
