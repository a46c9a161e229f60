"""deploy/Dockerfile, read as Docker reads it (no Docker needed): the stages, a non-root user, the
health check, pinned base images, CPU torch in the CPU image, and a build context that holds every
file the Dockerfile copies (.dockerignore is an allowlist)."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bot.server import HEALTH_PATH

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def last(self, keyword: str) -> str | None:
        found = self.all(keyword)
        return found[-1] if found else None


def instructions() -> list[tuple[str, str]]:
    """(KEYWORD, arguments) in order, continuation lines joined, comments dropped."""
    logical, current = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    out = []
    for line in logical:
        keyword, _, args = line.strip().partition(" ")
        out.append((keyword.upper(), args.strip()))
    return out


def global_args() -> dict[str, str]:
    args = {}
    for keyword, value in instructions():
        if keyword == "FROM":
            break
        if keyword == "ARG":
            name, _, default = value.partition("=")
            args[name] = default
    return args


def stages() -> dict[str, Stage]:
    out: dict[str, Stage] = {}
    current = None
    for keyword, args in instructions():
        if keyword == "FROM":
            parts = args.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else f"#{len(out)}"
            current = out[name] = Stage(name, parts[0])
        elif current is not None:
            current.instructions.append((keyword, args))
    return out


def resolve(image: str) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: global_args()[m.group(1)], image)


def exec_form(args: str) -> list[str]:
    return json.loads(args)


def torch_pin() -> str:
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (pin,) = [d for d in dependencies if re.match(r"torch\b", d)]
    return pin


def test_the_stages_build_the_bot_image_by_default_and_the_gpu_image_on_request():
    names = list(stages())
    assert {"builder", "gpu-builder", "train-gpu", "runtime"} <= set(names)
    # `docker build` without --target builds the last stage: the bot and scheduler image.
    assert names[-1] == "runtime"


@pytest.mark.parametrize("stage", ["runtime", "train-gpu"])
def test_the_images_run_as_an_unprivileged_user_with_their_data_in_a_volume(stage):
    s = stages()[stage]
    user = s.last("USER")
    assert user and user.split(":")[0] not in ("0", "root"), f"{stage} runs as {user}"
    assert user.split(":")[0] == "10001"
    assert "LOREBOT_DATA_DIR=/data" in " ".join(s.all("ENV"))
    assert exec_form(s.last("VOLUME")) == ["/data"]
    assert exec_form(s.last("ENTRYPOINT")) == ["lorebot"]
    # The user is created in the base both stages start from.
    assert any("--uid 10001" in run for run in stages()["base"].all("RUN"))


def test_the_bot_image_serves_http_and_checks_its_health_without_curl():
    runtime = stages()["runtime"]
    assert exec_form(runtime.last("CMD")) == ["serve", "--http", "--port", "3000"]
    healthcheck = runtime.last("HEALTHCHECK")
    options, _, command = healthcheck.partition("CMD ")
    check = exec_form(command)
    assert check[:2] == ["python", "-c"] and f"http://127.0.0.1:3000{HEALTH_PATH}" in check[2]
    compile(check[2], "HEALTHCHECK", "exec")
    assert "curl" not in healthcheck and "--start-period" in options
    assert "EXPOSE" in dict(runtime.instructions) and runtime.last("EXPOSE") == "3000"


def test_the_gpu_image_trains():
    train = stages()["train-gpu"]
    assert exec_form(train.last("CMD")) == ["train", "--json"]
    assert train.last("HEALTHCHECK") is None


def test_base_images_are_pinned():
    for stage in stages().values():
        image = resolve(stage.base)
        if image in stages():
            continue  # FROM another stage
        repository, _, tag = image.rpartition(":")
        assert repository and tag and tag != "latest" and re.search(r"\d", tag), f"{stage.name}: {image}"
    assert resolve("${PYTHON_IMAGE}").startswith("python:3.11-")
    assert 'requires-python = ">=3.11,<3.12"' in (ROOT / "pyproject.toml").read_text()


def test_cpu_torch_is_installed_from_its_index_before_the_project():
    pin = torch_pin()
    runs = stages()["builder"].all("RUN")
    (torch_step,) = [i for i, run in enumerate(runs) if "torch" in run]
    assert shlex.split(runs[torch_step])[:3] == ["pip", "install", pin]
    assert f"--index-url {CPU_INDEX}" in runs[torch_step]
    (project_step,) = [i for i, run in enumerate(runs) if re.search(r"pip install \.(\s|$)", run)]
    assert torch_step < project_step
    # The same pin as the Makefile's CPU-first install.
    assert f"pip install --quiet {pin}" in (ROOT / "Makefile").read_text()
    # Nothing else of the CPU image comes from a CUDA index.
    for stage in ("base", "builder", "runtime"):
        assert "whl/cu" not in " ".join(stages()[stage].all("RUN")), stage


def test_the_gpu_image_installs_the_same_torch_version():
    runs = stages()["gpu-builder"].all("RUN")
    (torch_step,) = [run for run in runs if "torch" in run]
    assert shlex.split(torch_step)[:3] == ["pip", "install", torch_pin()]
    assert CPU_INDEX not in torch_step


def test_the_runtime_copies_its_environment_from_the_cpu_builder():
    copies = [args.split() for args in stages()["runtime"].all("COPY")]
    assert ["--from=builder", "/opt/lorebot/venv", "/opt/lorebot/venv"] in copies
    gpu_copies = [args.split() for args in stages()["train-gpu"].all("COPY")]
    assert ["--from=gpu-builder", "/opt/lorebot/venv", "/opt/lorebot/venv"] in gpu_copies


def test_the_onnx_encoder_is_built_where_the_bot_looks_for_it():
    (build,) = [run for run in stages()["runtime"].all("RUN") if "load_embedder" in run]
    assert "onnx_cache_dir=Path('/data/models')" in build
    # The bot's cache: $LOREBOT_DATA_DIR/models.
    assert 'self.settings.data_dir / "models"' in (ROOT / "bot" / "app.py").read_text()
    # Built before /data becomes a volume, so a fresh volume starts with a copy.
    keywords = [kw for kw, _ in stages()["runtime"].instructions]
    position = next(i for i, (kw, args) in enumerate(stages()["runtime"].instructions) if "load_embedder" in args)
    assert position < keywords.index("VOLUME")


@pytest.mark.slow
def test_the_onnx_build_step_works(tmp_path):
    """The build step's Python, run here against a temporary folder: the bundled model loads from the
    package alone and the export is made (what `docker build` would run)."""
    import subprocess
    import sys

    (build,) = [run for run in stages()["runtime"].all("RUN") if "load_embedder" in run]
    code = shlex.split(build.split("&&")[0])[2]
    target = tmp_path / "models"
    done = subprocess.run([sys.executable, "-c", code.replace("/data/models", str(target))],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert list(target.glob("*.onnx"))


# --- the build context -----------------------------------------------------------------------------


def dockerignore_patterns() -> list[tuple[bool, re.Pattern]]:
    """(excludes, pattern) per line, as Docker matches them: `*` within a path segment, `**` across."""
    out = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        regex = ""
        for part in re.split(r"(\*\*/|\*\*|\*|\?)", pattern):
            regex += {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(part, re.escape(part))
        out.append((not negated, re.compile(regex + r"$")))
    return out


def in_context(path: str) -> bool:
    """Whether .dockerignore lets ``path`` (relative to the root) into the build context: the last
    pattern matching it or one of its parent folders wins."""
    included = True
    parts = path.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    for excludes, pattern in dockerignore_patterns():
        if any(pattern.match(p) for p in prefixes):
            included = not excludes
    return included


def test_every_file_the_dockerfile_copies_is_in_the_build_context():
    sources = []
    for stage in stages().values():
        for args in stage.all("COPY"):
            parts = [p for p in args.split() if not p.startswith("--")]
            if any(p.startswith("--from=") for p in args.split()):
                continue
            sources += parts[:-1]
    assert sources
    for source in sources:
        path = ROOT / source
        assert path.exists(), f"COPY {source}: no such file in the repository"
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
        for file in files:
            assert in_context(str(file.relative_to(ROOT))), f"{file.relative_to(ROOT)} is excluded by .dockerignore"


@pytest.mark.parametrize("path", [".venv/bin/python", ".lorebot/index/x.lance", ".bench/cache", ".git/HEAD",
                                  "deploy/.env", "tests/conftest.py", "bot/__pycache__/app.cpython-311.pyc"])
def test_local_state_and_secrets_stay_out_of_the_build_context(path):
    assert not in_context(path)


def test_the_hooks_the_manifests_name_are_in_the_image():
    copies = " ".join(stages()["runtime"].all("COPY"))
    assert "deploy/hooks /opt/lorebot/hooks" in copies
    assert "deploy/hooks /opt/lorebot/hooks" in " ".join(stages()["train-gpu"].all("COPY"))
    for script in ("reload-tgi.sh", "run-train-job.sh", "load-vllm-adapter.sh"):
        assert (ROOT / "deploy" / "hooks" / script).is_file()
