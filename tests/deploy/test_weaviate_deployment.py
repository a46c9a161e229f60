"""The Weaviate deployment files: what lorebot relies on is really configured there."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from bot.config import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def compose_service() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())["services"]["weaviate"]


def test_compose_pins_weaviate_and_keeps_its_data():
    service = compose_service()
    image = service["image"]
    assert re.fullmatch(r"cr\.weaviate\.io/semitechnologies/weaviate:\d+\.\d+\.\d+", image), image
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    volume, mount = service["volumes"][0].split(":")
    assert volume in compose["volumes"] and mount == service["environment"]["PERSISTENCE_DATA_PATH"]


def test_compose_requires_an_api_key_and_loads_no_vectorizer():
    env = compose_service()["environment"]
    assert env["AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED"] == "false"
    assert env["AUTHENTICATION_APIKEY_ENABLED"] == "true"
    # The key comes from the environment, and compose refuses to start without one.
    assert env["AUTHENTICATION_APIKEY_ALLOWED_KEYS"].startswith("${WEAVIATE_API_KEY:?")
    assert env["DEFAULT_VECTORIZER_MODULE"] == "none" and env["ENABLE_MODULES"] == ""
    assert env["ENABLE_API_BASED_MODULES"] == "false"


def test_compose_exposes_rest_and_grpc_on_the_ports_lorebot_uses():
    ports = {p.split(":")[1] for p in compose_service()["ports"]}
    assert {"8080", str(Settings.model_fields["weaviate_grpc_port"].default)} <= ports
    assert "/v1/.well-known/ready" in " ".join(compose_service()["healthcheck"]["test"])


def test_helm_values_run_three_replicas_with_grpc_and_api_keys():
    values = yaml.safe_load((DEPLOY / "helm" / "weaviate-values.yaml").read_text())
    assert values["replicas"] == 3 and values["env"]["RAFT_BOOTSTRAP_EXPECT"] == 3
    assert values["grpcService"]["enabled"] is True
    assert values["authentication"]["anonymous_access"]["enabled"] is False
    assert values["envSecrets"]["AUTHENTICATION_APIKEY_ALLOWED_KEYS"]
    assert values["env"]["DEFAULT_VECTORIZER_MODULE"] == "none"
    # The same pinned version as compose.
    assert compose_service()["image"].endswith(":" + values["image"]["tag"])
