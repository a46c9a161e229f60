"""The deployment files are valid for the tools that will read them, offline: the compose file against
the Compose Specification's JSON schema, every Kubernetes manifest against the Kubernetes API's
schemas (strict: an unknown or misspelled field fails), and every variable they set for lorebot is a
setting lorebot reads (or one its deploy scripts read): a typo would otherwise be silently ignored.

Schemas: check-jsonschema vendors the Compose Specification's schema (compose-spec.json);
kubernetes-validate bundles the Kubernetes OpenAPI schemas of each minor version. Both are in the
``dev`` extra.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from bot.config import Settings
from bot.server import HEALTH_PATH

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
ENV_EXAMPLE = DEPLOY / ".env.example"
K8S = DEPLOY / "k8s"
HOOKS = DEPLOY / "hooks"

# The oldest Kubernetes lorebot's manifests support, and the newest the validator knows.
K8S_VERSIONS = ["1.30", kubernetes_validate.latest_version()]
# Variables a lorebot container may have that are not lorebot settings: where libraries keep files.
LIBRARY_VARIABLES = {"HOME", "HF_HOME", "HF_HUB_CACHE"}
LOREBOT_PREFIXES = ("LOREBOT_", "SLACK_", "WEAVIATE_", "TGI_", "HF_")


def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def k8s_files() -> list[Path]:
    return sorted(K8S.glob("*.yaml"))


def k8s_documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def all_k8s_documents() -> list[dict]:
    return [doc for path in k8s_files() for doc in k8s_documents(path)]


def k8s_object(kind: str, name: str) -> dict:
    (found,) = [d for d in all_k8s_documents() if d["kind"] == kind and d["metadata"].get("name") == name]
    return found


def setting_names() -> set[str]:
    return {field.validation_alias for field in Settings.model_fields.values() if isinstance(field.validation_alias, str)}


def script_variables() -> set[str]:
    """Variables the deploy scripts read (the hooks, TGI's start script)."""
    names: set[str] = set()
    for script in [*HOOKS.glob("*.sh"), DEPLOY / "tgi" / "start-tgi.sh"]:
        names |= set(re.findall(r"\$\{?([A-Z][A-Z0-9_]*)", script.read_text()))
    return names


def compose_variables() -> set[str]:
    return set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", COMPOSE_FILE.read_text()))


def lorebot_services() -> dict[str, dict]:
    return {name: s for name, s in compose()["services"].items() if str(s.get("image", "")).startswith("lorebot:")}


def unknown_variables(names: set[str]) -> set[str]:
    known = setting_names() | script_variables() | LIBRARY_VARIABLES
    return {n for n in names if (n.startswith(LOREBOT_PREFIXES) or n not in LIBRARY_VARIABLES) and n not in known}


def pod_specs() -> list[tuple[str, dict]]:
    """(name, pod spec) of every workload in deploy/k8s."""
    out = []
    for doc in all_k8s_documents():
        if doc["kind"] in ("Deployment", "Job"):
            name = doc["metadata"].get("name") or doc["metadata"]["generateName"]
            out.append((name, doc["spec"]["template"]["spec"]))
    return out


def lorebot_containers() -> list[tuple[str, dict]]:
    return [(name, c) for name, pod in pod_specs() for c in pod.get("initContainers", []) + pod["containers"]
            if "/lorebot" in c["image"]]


# --- schemas ------------------------------------------------------------------------------------------


def compose_schema() -> dict:
    vendored = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    return json.loads(vendored.read_text())


def test_the_compose_file_follows_the_compose_specification():
    validator = jsonschema.Draft202012Validator(compose_schema())
    errors = sorted(validator.iter_errors(compose()), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


def test_the_schema_check_catches_a_misspelled_field():
    # The schema really is strict about services, or the test above would prove little.
    broken = compose()
    broken["services"]["bot"]["helthcheck"] = broken["services"]["bot"].pop("healthcheck")
    assert list(jsonschema.Draft202012Validator(compose_schema()).iter_errors(broken))


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("path", k8s_files(), ids=lambda p: p.name)
def test_every_kubernetes_manifest_follows_the_api_schema(path, version):
    documents = k8s_documents(path)
    assert documents, f"{path.name} holds no manifest"
    for doc in documents:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            where = "/".join(map(str, e.absolute_path))
            pytest.fail(f"{path.name}: {doc['kind']} {doc['metadata'].get('name')}: {where}: {e.message}")


def test_the_kubernetes_check_catches_a_misspelled_field():
    deployment = k8s_object("Deployment", "lorebot-bot")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"httpGet": {"port": 3000}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[0], strict=True)


# --- every variable is one lorebot reads ----------------------------------------------------------------


def test_the_variables_compose_sets_for_lorebot_are_settings():
    names: set[str] = set()
    for service in lorebot_services().values():
        names |= set(service.get("environment") or {})
    assert names, "the compose file sets no variable for lorebot?"
    assert not unknown_variables(names)


def test_the_variables_kubernetes_sets_for_lorebot_are_settings():
    names = set(k8s_object("ConfigMap", "lorebot-config")["data"])
    names |= set(k8s_object("Secret", "lorebot-secrets")["stringData"])
    for _, container in lorebot_containers():
        names |= {e["name"] for e in container.get("env", [])}
    assert not unknown_variables(names)


def test_every_variable_of_the_env_example_is_read_by_something():
    """Settings, the compose file's variables, the deploy scripts' variables, or Compose's own."""
    names = set(re.findall(r"^#?\s?([A-Z][A-Z0-9_]+)=", ENV_EXAMPLE.read_text(), flags=re.M))
    known = setting_names() | compose_variables() | script_variables() | {"COMPOSE_PROFILES"}
    assert names - known == set()
    # And every setting worth knowing in production is there, at least as a comment.
    for name in ("LOREBOT_DATABASE_URL", "SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "WEAVIATE_API_KEY", "TGI_URL",
                 "HF_TOKEN", "LOREBOT_BASE_MODEL", "LOREBOT_TRAIN_COMMAND", "LOREBOT_SOURCES", "LOREBOT_LOG_FORMAT"):
        assert name in names, name


def test_the_check_would_catch_a_typo():
    assert unknown_variables({"LOREBOT_DATABSE_URL", "LOREBOT_DATA_DIR", "HF_HOME"}) == {"LOREBOT_DATABSE_URL"}


# --- the compose file -----------------------------------------------------------------------------------


def env_example() -> dict[str, str]:
    """The variables deploy/.env.example sets (not the commented-out ones)."""
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def test_the_env_example_sets_what_compose_requires_with_placeholders_only():
    required = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*):\?", COMPOSE_FILE.read_text()))
    values = env_example()
    assert required and required <= set(values)
    for name, value in values.items():
        if name != "COMPOSE_PROFILES":
            assert "change-me" in value or value == "", f"{name} in .env.example must be a placeholder"
    # A plain `docker compose up` is the full stack.
    assert values["COMPOSE_PROFILES"] == "full"


def test_every_compose_variable_is_documented_in_the_env_example():
    documented = set(re.findall(r"^#?\s?([A-Z][A-Z0-9_]+)=", ENV_EXAMPLE.read_text(), flags=re.M))
    assert compose_variables() - documented == set()


def test_compose_images_are_pinned():
    for name, service in compose()["services"].items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and tag and tag != "latest" and re.search(r"\d", tag), f"{name}: {image}"


def test_every_service_belongs_to_a_profile_so_embedded_runs_alone():
    services = compose()["services"]
    profiles = {name: s.get("profiles") for name, s in services.items()}
    assert all(profiles.values()), f"a service without a profile starts with every profile: {profiles}"
    full = {n for n, p in profiles.items() if "full" in p}
    embedded = {n for n, p in profiles.items() if "embedded" in p}
    assert {"bot", "scheduler", "postgres", "weaviate", "tgi"} <= full
    assert embedded == {"bot-embedded", "scheduler-embedded"}
    for name in embedded:
        # Nothing of the full stack is started or needed.
        assert not services[name].get("depends_on"), name
        env = services[name]["environment"]
        assert env["WEAVIATE_URL"] == env["TGI_URL"] == env["LOREBOT_DATABASE_URL"] == "", name
        assert all(m.split(":")[0] not in ("lorebot-adapters", "postgres-data") for m in services[name]["volumes"])
    # The two embedded services share one data volume: the index and SQLite.
    assert "lorebot-data:/data" in services["bot-embedded"]["volumes"]
    assert "lorebot-data:/data" in services["scheduler-embedded"]["volumes"]


def test_the_embedded_profile_resolves_to_embedded_settings(monkeypatch):
    from bot.config import load_settings

    for name, value in compose()["services"]["bot-embedded"]["environment"].items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert not settings.weaviate_url and settings.tgi_url is None and not settings.database_url
    assert settings.data_dir == Path("/data")


def test_the_bot_scales_behind_postgres_weaviate_and_tgi():
    services = compose()["services"]
    bot = services["bot"]
    assert bot["command"] == ["serve", "--http", "--port", "3000"]
    assert str(bot["deploy"]["replicas"]).startswith("${LOREBOT_BOT_REPLICAS:-")
    assert "ports" not in bot, "replicas cannot share a host port"
    env = bot["environment"]
    assert env["LOREBOT_DATABASE_URL"].startswith("postgresql://lorebot:${POSTGRES_PASSWORD:?")
    assert env["LOREBOT_DATABASE_URL"].endswith("@postgres:5432/lorebot")
    assert env["WEAVIATE_URL"] == "http://weaviate:8080" and "http://tgi:80" in env["TGI_URL"]
    assert env["LOREBOT_LOG_FORMAT"] == "json"
    for dependency in ("postgres", "weaviate"):
        assert bot["depends_on"][dependency]["condition"] == "service_healthy"
    assert HEALTH_PATH in " ".join(bot["healthcheck"]["test"]) and "curl" not in bot["healthcheck"]["test"]
    postgres = services["postgres"]
    assert postgres["image"].startswith("postgres:17")
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert postgres["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")


def test_one_scheduler_writes_the_adapters_tgi_reads():
    services = compose()["services"]
    scheduler = services["scheduler"]
    assert scheduler["command"] == ["scheduler"] and scheduler["deploy"]["replicas"] == 1
    assert "127.0.0.1:9100/healthz" in " ".join(scheduler["healthcheck"]["test"]), "its metrics port's /healthz"
    adapters_dir = scheduler["environment"]["LOREBOT_ADAPTERS_DIR"]
    assert f"lorebot-adapters:{adapters_dir}" in scheduler["volumes"], "read-write"
    assert "lorebot-adapters:/adapters:ro" in services["tgi"]["volumes"]
    # Whoever created the volume first, the scheduler (uid 10001) may write it.
    init = services["init-volumes"]
    assert init["entrypoint"][:3] == ["chown", "-R", "10001:10001"] and adapters_dir in init["entrypoint"]
    assert scheduler["depends_on"]["init-volumes"]["condition"] == "service_completed_successfully"


def test_lorebot_services_share_the_image_and_the_env_file():
    services = lorebot_services()
    assert {"bot", "scheduler", "bot-embedded", "scheduler-embedded"} <= set(services)
    for name, service in services.items():
        assert service["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}, name
        assert service["env_file"] == ".env", name
        assert (COMPOSE_FILE.parent / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
        if name != "init-volumes":
            assert service.get("user") in (None, "10001", "10001:10001"), f"{name} runs as the image's user"


# --- Kubernetes -----------------------------------------------------------------------------------------


def containers_of(name: str) -> dict[str, dict]:
    pod = dict(pod_specs())[name]
    return {c["name"]: c for c in pod.get("initContainers", []) + pod["containers"]}


def test_k8s_images_are_pinned():
    for name, pod in pod_specs():
        for container in pod.get("initContainers", []) + pod["containers"]:
            tag = container["image"].rpartition(":")[2]
            assert tag and tag != "latest" and "/" not in tag, f"{name}: {container['image']}"


def test_the_bot_scales_on_cpu_with_health_probes():
    deployment = k8s_object("Deployment", "lorebot-bot")
    pod = deployment["spec"]["template"]["spec"]
    bot = containers_of("lorebot-bot")["bot"]
    assert bot["args"] == ["serve", "--http", "--port", "3000"]
    (port,) = bot["ports"]
    assert port == {"name": "http", "containerPort": 3000}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert bot[probe]["httpGet"] == {"path": HEALTH_PATH, "port": "http"}, probe
    assert bot["resources"]["requests"]["cpu"], "the autoscaler measures against the request"
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
    assert bot["securityContext"]["readOnlyRootFilesystem"] is True
    assert {m["mountPath"] for m in bot["volumeMounts"]} >= {"/data", "/tmp"}, "writable where lorebot writes"
    assert [r["configMapRef"]["name"] for r in bot["envFrom"] if "configMapRef" in r] == ["lorebot-config"]
    assert [r["secretRef"]["name"] for r in bot["envFrom"] if "secretRef" in r] == ["lorebot-secrets"]

    hpa = k8s_object("HorizontalPodAutoscaler", "lorebot-bot")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "lorebot-bot"}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 10)
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu" and metric["resource"]["target"]["averageUtilization"] == 70

    labels = deployment["spec"]["template"]["metadata"]["labels"]
    service = k8s_object("Service", "lorebot-bot")
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http"}]
    pdb = k8s_object("PodDisruptionBudget", "lorebot-bot")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items() and pdb["spec"]["minAvailable"] == 1


def test_the_bot_starts_with_the_onnx_encoder_the_image_carries():
    seed = containers_of("lorebot-bot")["seed-models"]
    (mount,) = seed["volumeMounts"]
    assert seed["command"] == ["cp", "-R", "/data/models", mount["mountPath"] + "/"]
    bot_data = next(m for m in containers_of("lorebot-bot")["bot"]["volumeMounts"] if m["mountPath"] == "/data")
    assert bot_data["name"] == mount["name"]


def test_one_scheduler_starts_training_jobs_it_may_create():
    deployment = k8s_object("Deployment", "lorebot-scheduler")
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"
    pod = deployment["spec"]["template"]["spec"]
    scheduler = containers_of("lorebot-scheduler")["scheduler"]
    assert scheduler["args"] == ["scheduler"]
    env = {e["name"]: e["value"] for e in scheduler["env"]}
    command = env["LOREBOT_TRAIN_COMMAND"]
    assert command.startswith("/opt/lorebot/hooks/") and (HOOKS / Path(command).name).is_file()
    # The Job template, mounted from its ConfigMap where the script looks for it.
    template = Path(env["LOREBOT_TRAIN_JOB_TEMPLATE"])
    volumes = {v["name"]: v for v in pod["volumes"]}
    (mount,) = [m for m in scheduler["volumeMounts"] if m["mountPath"] == str(template.parent)]
    assert volumes[mount["name"]]["configMap"]["name"] == "lorebot-train-job" and template.name == "train-job.yaml"
    # The adapters registry, read-write.
    (adapters,) = [m for m in scheduler["volumeMounts"] if m["mountPath"] == "/adapters"]
    assert not adapters.get("readOnly") and volumes[adapters["name"]]["persistentVolumeClaim"] == {
        "claimName": "lorebot-adapters"}
    # Its service account may create Jobs and read their logs.
    assert pod["serviceAccountName"] == "lorebot-scheduler"
    assert allowed("lorebot-scheduler", "batch", "jobs", "create")
    assert allowed("lorebot-scheduler", "batch", "jobs", "get") and allowed("lorebot-scheduler", "", "pods/log", "get")


def allowed(account: str, group: str, resource: str, verb: str) -> bool:
    for binding in (d for d in all_k8s_documents() if d["kind"] == "RoleBinding"):
        if not any(s["kind"] == "ServiceAccount" and s["name"] == account for s in binding["subjects"]):
            continue
        role = k8s_object("Role", binding["roleRef"]["name"])
        for rule in role["rules"]:
            if group in rule["apiGroups"] and resource in rule["resources"] and verb in rule["verbs"]:
                return True
    return False


def test_the_training_job_runs_lorebot_train_on_a_gpu_node():
    (job,) = k8s_documents(K8S / "train-job.yaml")
    assert job["kind"] == "Job" and job["metadata"]["generateName"] == "lorebot-train-"
    spec = job["spec"]
    assert spec["backoffLimit"] == 0 and spec["ttlSecondsAfterFinished"] > 0
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (train,) = pod["containers"]
    assert train["args"] == ["train", "--json"]
    assert train["image"].rpartition(":")[0].endswith("/lorebot-train"), "the train-gpu image"
    assert train["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"] and any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    volumes = {v["name"]: v for v in pod["volumes"]}
    (adapters,) = [m for m in train["volumeMounts"] if m["mountPath"] == "/adapters"]
    assert not adapters.get("readOnly") and volumes[adapters["name"]]["persistentVolumeClaim"]["claimName"] == (
        "lorebot-adapters")
    # Its promotion hook restarts TGI: the trainer's account may.
    assert pod["serviceAccountName"] == "lorebot-trainer"
    assert allowed("lorebot-trainer", "apps", "deployments", "patch")
    assert not allowed("lorebot-trainer", "batch", "jobs", "create")


def test_every_volume_claim_config_map_and_secret_a_pod_uses_is_provided():
    claims = {d["metadata"]["name"] for d in all_k8s_documents() if d["kind"] == "PersistentVolumeClaim"}
    config_maps = {d["metadata"]["name"] for d in all_k8s_documents() if d["kind"] == "ConfigMap"}
    config_maps.add("lorebot-train-job")  # created from train-job.yaml (kubectl create configmap)
    secrets = {d["metadata"]["name"] for d in yaml.safe_load_all((K8S / "secrets.example.yaml").read_text())}
    for name, pod in pod_specs():
        for volume in pod.get("volumes", []):
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims, name
            if "configMap" in volume:
                assert volume["configMap"]["name"] in config_maps, name
        for container in pod.get("initContainers", []) + pod["containers"]:
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in config_maps, name
                if "secretRef" in source:
                    assert source["secretRef"]["name"] in secrets, name
            for env in container.get("env", []):
                ref = env.get("valueFrom", {})
                if "secretKeyRef" in ref:
                    assert ref["secretKeyRef"]["name"] in secrets, name
                if "configMapKeyRef" in ref:
                    config = k8s_object("ConfigMap", ref["configMapKeyRef"]["name"])
                    assert ref["configMapKeyRef"]["key"] in config["data"], name


def test_the_secrets_example_holds_placeholders_and_matching_weaviate_keys():
    secrets = {d["metadata"]["name"]: d["stringData"] for d in yaml.safe_load_all((K8S / "secrets.example.yaml").read_text())}
    for name, data in secrets.items():
        for key, value in data.items():
            assert value == "" or "change-me" in value, f"{name}.{key} must be a placeholder"
    assert secrets["lorebot-secrets"]["WEAVIATE_API_KEY"] == secrets["weaviate-api-keys"][
        "AUTHENTICATION_APIKEY_ALLOWED_KEYS"]
    assert secrets["lorebot-secrets"]["LOREBOT_DATABASE_URL"].startswith("postgresql://")


def test_the_config_points_lorebot_at_the_weaviate_chart_and_tgi():
    data = k8s_object("ConfigMap", "lorebot-config")["data"]
    values = yaml.safe_load((DEPLOY / "helm" / "weaviate-values.yaml").read_text())
    assert data["WEAVIATE_URL"] == "http://weaviate" and data["WEAVIATE_GRPC_HOST"] == "weaviate-grpc"
    assert int(data["LOREBOT_WEAVIATE_REPLICATION_FACTOR"]) == values["replicas"]
    tgi = k8s_object("Deployment", "lorebot-tgi")["spec"]["template"]["spec"]["containers"][0]
    assert data["TGI_URL"] == "http://lorebot-tgi"
    assert data["LOREBOT_BASE_MODEL"] == tgi["args"][tgi["args"].index("--model-id") + 1]
    assert Path(data["LOREBOT_PROMOTION_HOOK"]).name == "reload-tgi.sh"
    assert "kubectl rollout status deployment/lorebot-tgi" in data["LOREBOT_RESTART_COMMAND"]
