"""The generation server's deployment files: TGI (and vLLM) run as lorebot expects, the start script
serves the right adapters, and the promotion hooks succeed and fail when they should.

Offline: the scripts run against fake commands and tiny HTTP servers on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
START_TGI = DEPLOY / "tgi" / "start-tgi.sh"
RELOAD_TGI = DEPLOY / "hooks" / "reload-tgi.sh"
LOAD_VLLM = DEPLOY / "hooks" / "load-vllm-adapter.sh"


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def k8s_documents() -> dict[str, dict]:
    docs = [d for d in yaml.safe_load_all((DEPLOY / "k8s" / "tgi.yaml").read_text()) if d]
    return {d["kind"]: d for d in docs}


_DEFAULT = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*):-((?:[^${}]|\$\{[^{}]*\})*)\}")


def with_defaults(value: str) -> str:
    """A compose value as compose resolves it with none of its variables set (nested defaults too)."""
    while (resolved := _DEFAULT.sub(lambda m: m.group(2), value)) != value:
        value = resolved
    return value


def option(args: list[str], name: str) -> str:
    assert args.count(name) == 1, f"{name} given {args.count(name)} times in {args}"
    return args[args.index(name) + 1]


def mounts(service: dict) -> dict[str, tuple[str, bool]]:
    """target -> (source, read-only) for a service's volumes, short or long syntax."""
    out = {}
    for volume in service["volumes"]:
        if isinstance(volume, str):
            source, target, *mode = volume.split(":")
            out[target] = (source, "ro" in (mode[0].split(",") if mode else []))
        else:
            out[volume["target"]] = (volume["source"], bool(volume.get("read_only")))
    return out


# --- compose ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["tgi", "vllm"])
def test_compose_pins_the_server_images(name):
    image = compose()["services"][name]["image"]
    repository, _, tag = image.rpartition(":")
    assert repository in {"ghcr.io/huggingface/text-generation-inference", "vllm/vllm-openai"}
    assert tag and tag != "latest" and re.fullmatch(r"v?\d+\.\d+\.\d+", tag), image
    if name == "tgi":
        assert tag.startswith("3."), "TGI 3.x: the Messages API and --lora-adapters as lorebot uses them"


@pytest.mark.parametrize("name", ["tgi", "vllm"])
def test_compose_reserves_a_gpu(name):
    service = compose()["services"][name]
    devices = service["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert service["shm_size"] == "1gb"


def test_compose_runs_tgi_with_the_model_and_limits_lorebot_expects():
    service = compose()["services"]["tgi"]
    args = [with_defaults(str(a)) for a in service["command"]]
    assert option(args, "--model-id") == "Qwen/Qwen2.5-1.5B-Instruct"
    max_input = int(option(args, "--max-input-tokens"))
    max_total = int(option(args, "--max-total-tokens"))
    prefill = int(option(args, "--max-batch-prefill-tokens"))
    assert (max_input, max_total) == (3072, 4096)
    # TGI refuses to start unless a prompt fits in one prefill and leaves room for an answer.
    assert max_input < max_total and prefill >= max_input
    # Each one can be changed without editing the file; the prefill follows the input limit.
    assert "${LOREBOT_BASE_MODEL:-" in option(service["command"], "--model-id")
    assert option(service["command"], "--max-input-tokens").startswith("${LOREBOT_TGI_MAX_INPUT_TOKENS:-")
    assert option(service["command"], "--max-total-tokens").startswith("${LOREBOT_TGI_MAX_TOTAL_TOKENS:-")
    assert "${LOREBOT_TGI_MAX_INPUT_TOKENS:-" in option(service["command"], "--max-batch-prefill-tokens")
    # The start script adds the adapters; nothing else may.
    assert "--lora-adapters" not in args


def test_compose_starts_tgi_through_the_start_script():
    service = compose()["services"]["tgi"]
    script = service["entrypoint"][-1]
    source, read_only = mounts(service)[script]
    assert (DEPLOY / source).resolve() == START_TGI and read_only
    assert service["environment"]["LOREBOT_ADAPTERS_MOUNT"] == "/adapters"


def test_compose_mounts_the_adapters_registry_read_only_on_both_servers():
    spec = compose()
    for name in ("tgi", "vllm"):
        assert mounts(spec["services"][name])["/adapters"] == ("lorebot-adapters", True), name
    # The volume the training side writes, under that name whatever the project is called.
    assert spec["volumes"]["lorebot-adapters"]["name"] == "lorebot-adapters"
    assert mounts(spec["services"]["tgi"])["/data"][0] in spec["volumes"]


def test_compose_exposes_tgi_beside_weaviate_with_a_health_check():
    spec = compose()["services"]
    tgi = spec["tgi"]
    assert tgi["ports"] == ["8081:80"]
    assert "8080" in {p.split(":")[0] for p in spec["weaviate"]["ports"]}
    assert "http://localhost:80/health" in tgi["healthcheck"]["test"]
    assert spec["vllm"]["ports"] == ["8082:8000"]
    assert any("/health" in part for part in spec["vllm"]["healthcheck"]["test"])


@pytest.mark.parametrize("name", ["tgi", "vllm"])
def test_compose_passes_hf_token_through_without_inventing_one(name):
    env = compose()["services"][name]["environment"]
    # No value: compose passes the caller's HF_TOKEN, or none (an empty token is not "no token").
    assert "HF_TOKEN" in env and env["HF_TOKEN"] is None


def test_compose_keeps_vllm_behind_a_profile_with_runtime_lora_loading():
    spec = compose()["services"]
    vllm = spec["vllm"]
    assert vllm["profiles"] == ["vllm"]
    # TGI and Weaviate belong to the full stack, which deploy/.env.example makes the default.
    assert spec["tgi"]["profiles"] == ["full"] and spec["weaviate"]["profiles"] == ["full"]
    args = [with_defaults(str(a)) for a in vllm["command"]]
    assert "--enable-lora" in args
    assert option(args, "--max-lora-rank") == "64"
    assert int(option(args, "--max-model-len")) == 4096
    # Served under the base model's id, as adapter_config.json names its base model.
    assert option(args, "--served-model-name") == option(args, "--model") == "Qwen/Qwen2.5-1.5B-Instruct"
    env = vllm["environment"]
    assert env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    assert env["VLLM_LORA_RESOLVER_CACHE_DIR"] == "/adapters"


# --- Kubernetes -------------------------------------------------------------------------------------


def test_k8s_runs_one_tgi_pod_on_a_gpu_with_health_probes():
    docs = k8s_documents()
    deployment = docs["Deployment"]
    assert deployment["metadata"]["name"] == "lorebot-tgi" and deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["path"] == "/health", probe
    assert container["image"] == compose()["services"]["tgi"]["image"]
    hf_token = next(e for e in container["env"] if e["name"] == "HF_TOKEN")
    assert hf_token["valueFrom"]["secretKeyRef"]["optional"] is True


def test_k8s_mounts_the_adapters_claim_read_only():
    pod = k8s_documents()["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    (adapters,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/adapters"]
    assert adapters["readOnly"] is True
    claim = volumes[adapters["name"]]["persistentVolumeClaim"]
    assert claim["claimName"] == "lorebot-adapters" and claim["readOnly"] is True
    (models,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/data"]
    assert "persistentVolumeClaim" in volumes[models["name"]] or "emptyDir" in volumes[models["name"]]


def test_k8s_starts_tgi_with_the_same_script_and_arguments_as_compose():
    docs = k8s_documents()
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    script = container["command"][-1]
    (mount,) = [m for m in container["volumeMounts"] if script.startswith(m["mountPath"] + "/")]
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    config_map = docs["ConfigMap"]
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    # The ConfigMap holds a copy of the script: the two may not drift apart.
    assert config_map["data"][Path(script).name] == START_TGI.read_text()
    compose_args = [with_defaults(str(a)) for a in compose()["services"]["tgi"]["command"]]
    assert [str(a) for a in container["args"]] == compose_args


def test_k8s_service_is_lorebot_tgi_on_port_80():
    docs = k8s_documents()
    service = docs["Service"]
    assert service["metadata"]["name"] == "lorebot-tgi"
    (port,) = service["spec"]["ports"]
    assert port["port"] == 80 and port["targetPort"] == "http"
    assert service["spec"]["selector"].items() <= docs["Deployment"]["spec"]["template"]["metadata"]["labels"].items()


# --- the scripts ------------------------------------------------------------------------------------


@pytest.mark.parametrize("script", [START_TGI, RELOAD_TGI, LOAD_VLLM])
def test_scripts_are_executable_posix_sh(script):
    assert os.access(script, os.X_OK), f"{script} is not executable"
    assert script.read_text().startswith("#!/bin/sh\n")
    assert subprocess.run(["sh", "-n", str(script)], capture_output=True).returncode == 0


def run_script(script: Path, env: dict[str, str], *args: str, path: str | None = None,
               timeout: float = 15) -> subprocess.CompletedProcess[str]:
    full_env = {"PATH": path if path is not None else os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"),
                "LC_ALL": "C"}
    full_env.update(env)
    return subprocess.run(["sh", str(script), *args], env=full_env, capture_output=True, text=True,
                          timeout=timeout)


# --- start-tgi.sh -----------------------------------------------------------------------------------


@pytest.fixture
def fake_launcher(tmp_path) -> str:
    """A PATH whose text-generation-launcher prints its arguments, one a line."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    launcher = bin_dir / "text-generation-launcher"
    launcher.write_text('#!/bin/sh\nprintf \'%s\\n\' "$@"\n')
    launcher.chmod(0o755)
    return f"{bin_dir}{os.pathsep}{os.environ['PATH']}"


def add_adapter(registry: Path, name: str, complete: bool = True) -> None:
    directory = registry / name
    directory.mkdir(parents=True)
    (directory / "adapter_model.safetensors").write_bytes(b"\0")
    if complete:
        (directory / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 16}))


def start_tgi(registry: Path, path: str, *args: str, **env: str) -> tuple[list[str], str]:
    result = run_script(START_TGI, {"LOREBOT_ADAPTERS_MOUNT": str(registry), **env},
                        *(args or ("--model-id", "Qwen/Qwen2.5-1.5B-Instruct")), path=path)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines(), result.stderr


def test_start_tgi_serves_recent_complete_adapters_and_always_the_promoted_one(tmp_path, fake_launcher):
    registry = tmp_path / "adapters"
    for name in ("lorebot-v0001", "lorebot-v0002", "lorebot-v0003", "lorebot-v0004"):
        add_adapter(registry, name)
    add_adapter(registry, "lorebot-v0005", complete=False)   # still being written
    add_adapter(registry, ".lorebot-v0006.partial")          # a dot directory: in progress
    (registry / "notes.txt").write_text("not an adapter")
    (registry / "promoted.json").write_text(json.dumps({"version": "lorebot-v0001", "promoted_at": "x"}))

    argv, stderr = start_tgi(registry, fake_launcher, LOREBOT_TGI_MAX_ADAPTERS="2")

    assert argv[:2] == ["--model-id", "Qwen/Qwen2.5-1.5B-Instruct"]
    # Two seats: the promoted one (older than the two most recent) and the newest.
    assert option(argv, "--lora-adapters") == (
        f"lorebot-v0001={registry}/lorebot-v0001,lorebot-v0004={registry}/lorebot-v0004")
    (line,) = [line for line in stderr.splitlines() if "serving" in line]
    assert "lorebot-v0001, lorebot-v0004" in line and "promoted: lorebot-v0001" in line


def test_start_tgi_takes_the_most_recent_when_the_promoted_one_is_among_them(tmp_path, fake_launcher):
    registry = tmp_path / "adapters"
    for number in range(1, 12):
        add_adapter(registry, f"lorebot-v{number:04d}")
    # Pretty-printed, as json.dump(indent=2) writes it.
    (registry / "promoted.json").write_text(json.dumps({"version": "lorebot-v0010", "score": 0.8}, indent=2))

    argv, _ = start_tgi(registry, fake_launcher)   # the default cap: 8

    served = [item.split("=")[0] for item in option(argv, "--lora-adapters").split(",")]
    assert served == [f"lorebot-v{number:04d}" for number in range(4, 12)]


def test_start_tgi_without_promoted_json_serves_the_most_recent(tmp_path, fake_launcher):
    registry = tmp_path / "adapters"
    for name in ("lorebot-v0001", "lorebot-v0002", "lorebot-v0003"):
        add_adapter(registry, name)

    argv, _ = start_tgi(registry, fake_launcher, LOREBOT_TGI_MAX_ADAPTERS="2")

    assert option(argv, "--lora-adapters") == (
        f"lorebot-v0002={registry}/lorebot-v0002,lorebot-v0003={registry}/lorebot-v0003")


def test_start_tgi_ignores_a_promoted_adapter_that_is_not_complete(tmp_path, fake_launcher):
    registry = tmp_path / "adapters"
    add_adapter(registry, "lorebot-v0001")
    add_adapter(registry, "lorebot-v0002", complete=False)
    (registry / "promoted.json").write_text('{"version": "lorebot-v0002"}')

    argv, stderr = start_tgi(registry, fake_launcher)

    assert option(argv, "--lora-adapters") == f"lorebot-v0001={registry}/lorebot-v0001"
    assert "lorebot-v0002" in stderr and "ignoring" in stderr


def test_start_tgi_reads_a_pointer_back_to_the_base_model_as_no_promoted_adapter(tmp_path, fake_launcher):
    registry = tmp_path / "adapters"
    for name in ("lorebot-v0001", "lorebot-v0002"):
        add_adapter(registry, name)
    # What AdapterRegistry.write_promoted(None) writes.
    (registry / "promoted.json").write_text(json.dumps({"version": None, "reason": "rollback"}, indent=2))

    argv, stderr = start_tgi(registry, fake_launcher, LOREBOT_TGI_MAX_ADAPTERS="1")

    assert option(argv, "--lora-adapters") == f"lorebot-v0002={registry}/lorebot-v0002"
    assert "promoted:" not in stderr


@pytest.mark.parametrize("contents", ["empty", "only-incomplete", "missing"])
def test_start_tgi_adds_no_adapter_flag_without_adapters(tmp_path, fake_launcher, contents):
    registry = tmp_path / "adapters"
    if contents != "missing":
        registry.mkdir()
    if contents == "only-incomplete":
        add_adapter(registry, "lorebot-v0001", complete=False)
        add_adapter(registry, ".lorebot-v0002")
        (registry / "promoted.json").write_text('{"version": "lorebot-v0001"}')

    argv, stderr = start_tgi(registry, fake_launcher)

    assert argv == ["--model-id", "Qwen/Qwen2.5-1.5B-Instruct"]
    assert "base model only" in stderr


def test_start_tgi_skips_names_tgi_cannot_take(tmp_path, fake_launcher):
    registry = tmp_path / "adapters"
    add_adapter(registry, "lorebot-v0001")
    add_adapter(registry, "bad,name=x")

    argv, stderr = start_tgi(registry, fake_launcher)

    assert option(argv, "--lora-adapters") == f"lorebot-v0001={registry}/lorebot-v0001"
    assert "bad,name=x" in stderr


def test_start_tgi_leaves_an_explicit_adapter_list_alone(tmp_path, fake_launcher):
    registry = tmp_path / "adapters"
    add_adapter(registry, "lorebot-v0001")

    argv, _ = start_tgi(registry, fake_launcher, "--model-id", "m", "--lora-adapters", "mine=/x")

    assert argv == ["--model-id", "m", "--lora-adapters", "mine=/x"]


@pytest.mark.parametrize("cap", ["0", "-1", "eight", ""])
def test_start_tgi_refuses_a_cap_that_is_not_a_positive_number(tmp_path, fake_launcher, cap):
    registry = tmp_path / "adapters"
    add_adapter(registry, "lorebot-v0001")
    result = run_script(START_TGI, {"LOREBOT_ADAPTERS_MOUNT": str(registry), "LOREBOT_TGI_MAX_ADAPTERS": cap},
                        path=fake_launcher)
    if cap == "":
        # Empty means unset: the default cap.
        assert result.returncode == 0 and "--lora-adapters" in result.stdout
    else:
        assert result.returncode == 2 and "LOREBOT_TGI_MAX_ADAPTERS" in result.stderr
        assert result.stdout == ""


# --- fake servers for the hooks ---------------------------------------------------------------------


@dataclass
class FakeServer:
    """Answers from a script: a list of (status, body) per path, the last one repeated."""

    responses: dict[tuple[str, str], list[tuple[int, str]]] = field(default_factory=dict)
    requests: list[tuple[str, str, str]] = field(default_factory=list)
    url: str = ""

    def answer(self, method: str, path: str, body: str) -> tuple[int, str]:
        self.requests.append((method, path, body))
        script = self.responses.get((method, path))
        if not script:
            return 404, json.dumps({"detail": "Not Found"})
        return script.pop(0) if len(script) > 1 else script[0]

    def count(self, method: str, path: str) -> int:
        return sum(1 for m, p, _ in self.requests if (m, p) == (method, path))


@pytest.fixture
def fake_server() -> Iterator[FakeServer]:
    state = FakeServer()

    class Handler(BaseHTTPRequestHandler):
        def _respond(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            status, payload = state.answer(self.command, self.path, body)
            data = payload.encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _respond

        def log_message(self, *args) -> None:  # keep pytest's output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def closed_port_url() -> str:
    """A local URL nothing listens on."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = server.server_address[1]
    server.server_close()
    return f"http://127.0.0.1:{port}"


@pytest.fixture(params=["curl", "python3"])
def http_client_path(request, tmp_path) -> str:
    """The PATH the hooks run with: as is (curl), or with no curl, so they use python3."""
    if request.param == "curl":
        if shutil.which("curl") is None:
            pytest.skip("curl is not installed")
        return os.environ["PATH"]
    bin_dir = tmp_path / "no-curl-bin"
    bin_dir.mkdir()
    for tool in ("sh", "date", "sleep", "dirname", "mktemp", "rm", "tr", "grep", "cut", "cat", "timeout",
                 "echo", "true", "false"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    (bin_dir / "python3").symlink_to(sys.executable)
    return str(bin_dir)


# --- reload-tgi.sh ----------------------------------------------------------------------------------


def reload_env(tmp_path: Path, url: str, restart: str | None = None, **extra: str) -> dict[str, str]:
    calls = tmp_path / "restart-calls"
    env = {
        "LOREBOT_ADAPTER_VERSION": "lorebot-v0004",
        "TGI_URL": url,
        "LOREBOT_RESTART_COMMAND": restart or f'echo "restart $LOREBOT_ADAPTER_VERSION" >> "{calls}"',
        "LOREBOT_HOOK_TIMEOUT_S": "10",
        "LOREBOT_HOOK_POLL_INTERVAL_S": "0.1",
    }
    env.update(extra)
    return env


def test_reload_tgi_restarts_then_waits_for_health(tmp_path, fake_server, http_client_path):
    fake_server.responses[("GET", "/health")] = [(503, "{}"), (503, "{}"), (200, "")]

    result = run_script(RELOAD_TGI, reload_env(tmp_path, fake_server.url), path=http_client_path)

    assert result.returncode == 0, result.stderr
    assert (tmp_path / "restart-calls").read_text() == "restart lorebot-v0004\n"
    assert fake_server.count("GET", "/health") == 3
    assert "healthy" in result.stderr


def test_reload_tgi_fails_when_the_restart_fails(tmp_path, fake_server):
    fake_server.responses[("GET", "/health")] = [(200, "")]

    result = run_script(RELOAD_TGI, reload_env(tmp_path, fake_server.url, restart="echo no docker >&2; exit 3"))

    assert result.returncode != 0
    assert "restart" in result.stderr and "status 3" in result.stderr
    assert "keep the previous adapter" in result.stderr
    # A server still answering from before the restart proves nothing: it is not asked.
    assert fake_server.count("GET", "/health") == 0


def test_reload_tgi_fails_when_health_never_comes(tmp_path, fake_server):
    fake_server.responses[("GET", "/health")] = [(503, "{}")]

    started = time.monotonic()
    result = run_script(RELOAD_TGI, reload_env(tmp_path, fake_server.url, LOREBOT_HOOK_TIMEOUT_S="1"))

    assert result.returncode != 0
    assert "did not answer /health with 200 within 1s" in result.stderr and "503" in result.stderr
    assert fake_server.count("GET", "/health") >= 1
    assert time.monotonic() - started < 5


def test_reload_tgi_fails_when_nothing_answers(tmp_path, closed_port_url):
    result = run_script(RELOAD_TGI, reload_env(tmp_path, closed_port_url, LOREBOT_HOOK_TIMEOUT_S="1"))

    assert result.returncode != 0 and "last answer: none" in result.stderr


def test_reload_tgi_requires_the_adapter_version(tmp_path, fake_server):
    env = reload_env(tmp_path, fake_server.url)
    del env["LOREBOT_ADAPTER_VERSION"]

    result = run_script(RELOAD_TGI, env)

    assert result.returncode == 2 and "LOREBOT_ADAPTER_VERSION" in result.stderr
    assert not (tmp_path / "restart-calls").exists()


# --- load-vllm-adapter.sh ---------------------------------------------------------------------------


def models(*ids: str) -> str:
    return json.dumps({"object": "list", "data": [{"id": i, "object": "model"} for i in ids]})


def vllm_env(url: str, **extra: str) -> dict[str, str]:
    return {"LOREBOT_ADAPTER_VERSION": "lorebot-v0004", "VLLM_URL": url, "LOREBOT_HOOK_TIMEOUT_S": "5", **extra}


def test_load_vllm_adapter_loads_then_checks_the_listing(fake_server, http_client_path):
    fake_server.responses[("POST", "/v1/load_lora_adapter")] = [
        (200, "Success: LoRA adapter 'lorebot-v0004' added successfully.")]
    fake_server.responses[("GET", "/v1/models")] = [(200, models("Qwen/Qwen2.5-1.5B-Instruct", "lorebot-v0004"))]

    result = run_script(LOAD_VLLM, vllm_env(fake_server.url), path=http_client_path)

    assert result.returncode == 0, result.stderr
    (post,) = [body for method, path, body in fake_server.requests if method == "POST"]
    assert json.loads(post) == {"lora_name": "lorebot-v0004", "lora_path": "/adapters/lorebot-v0004"}
    assert fake_server.count("GET", "/v1/models") == 1


def test_load_vllm_adapter_sends_the_path_the_server_sees(fake_server):
    fake_server.responses[("POST", "/v1/load_lora_adapter")] = [(200, "Success")]
    fake_server.responses[("GET", "/v1/models")] = [(200, models("base", "lorebot-v0004"))]

    result = run_script(LOAD_VLLM, vllm_env(fake_server.url, LOREBOT_ADAPTER_PATH="/mnt/registry/lorebot-v0004"))

    assert result.returncode == 0, result.stderr
    (post,) = [body for method, path, body in fake_server.requests if method == "POST"]
    assert json.loads(post)["lora_path"] == "/mnt/registry/lorebot-v0004"


def test_load_vllm_adapter_accepts_an_adapter_already_loaded(fake_server):
    already = {"object": "error", "message": "The lora adapter 'lorebot-v0004' has already been loaded.",
               "type": "InvalidUserInput", "param": None, "code": 400}
    fake_server.responses[("POST", "/v1/load_lora_adapter")] = [(400, json.dumps(already))]
    fake_server.responses[("GET", "/v1/models")] = [(200, models("base", "lorebot-v0004"))]

    result = run_script(LOAD_VLLM, vllm_env(fake_server.url))

    assert result.returncode == 0, result.stderr
    assert "already" in result.stderr


@pytest.mark.parametrize(("status", "message"), [
    (404, "No adapter found for /adapters/lorebot-v0004"),
    (400, "Invalid LoRA adapter: rank 128 is greater than max_lora_rank 64"),
    (500, "Internal Server Error"),
])
def test_load_vllm_adapter_fails_when_the_server_refuses(fake_server, status, message):
    fake_server.responses[("POST", "/v1/load_lora_adapter")] = [
        (status, json.dumps({"object": "error", "message": message, "code": status}))]
    fake_server.responses[("GET", "/v1/models")] = [(200, models("base", "lorebot-v0004"))]

    result = run_script(LOAD_VLLM, vllm_env(fake_server.url))

    assert result.returncode != 0
    assert str(status) in result.stderr and message in result.stderr
    assert "keep the previous adapter" in result.stderr.lower()


def test_load_vllm_adapter_fails_on_a_server_without_runtime_loading(fake_server):
    # No route at all (VLLM_ALLOW_RUNTIME_LORA_UPDATING unset): FastAPI's plain 404.
    fake_server.responses[("GET", "/v1/models")] = [(200, models("base"))]

    result = run_script(LOAD_VLLM, vllm_env(fake_server.url))

    assert result.returncode != 0 and "VLLM_ALLOW_RUNTIME_LORA_UPDATING" in result.stderr


def test_load_vllm_adapter_fails_when_the_adapter_is_not_listed(fake_server, http_client_path):
    fake_server.responses[("POST", "/v1/load_lora_adapter")] = [(200, "Success")]
    # A name that merely contains the version does not count.
    fake_server.responses[("GET", "/v1/models")] = [(200, models("base", "lorebot-v00041", "xlorebot-v0004"))]

    result = run_script(LOAD_VLLM, vllm_env(fake_server.url), path=http_client_path)

    assert result.returncode != 0 and "does not list lorebot-v0004" in result.stderr


def test_load_vllm_adapter_fails_when_nothing_answers(closed_port_url):
    result = run_script(LOAD_VLLM, vllm_env(closed_port_url))

    assert result.returncode != 0 and "nothing answered" in result.stderr


@pytest.mark.parametrize("env", [
    {"LOREBOT_ADAPTER_VERSION": ""},
    {"LOREBOT_ADAPTER_VERSION": 'bad"name'},
    {"LOREBOT_ADAPTER_PATH": '/adapters/x"y'},
])
def test_load_vllm_adapter_refuses_bad_settings_before_sending_anything(fake_server, env):
    result = run_script(LOAD_VLLM, vllm_env(fake_server.url, **env))

    assert result.returncode == 2
    assert fake_server.requests == []
