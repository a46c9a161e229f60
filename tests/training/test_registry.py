"""The adapter registry: versions appear whole, the promoted pointer changes atomically, and a
failing promotion hook changes nothing."""

from __future__ import annotations

import json
import threading

import pytest

from training.registry import ADAPTER_CONFIG, AdapterRegistry, RegistryError, command_hook


def add_version(registry: AdapterRegistry, loss: float = 1.0, heldout_loss: float | None = None) -> str:
    name, partial = registry.reserve()
    (partial / ADAPTER_CONFIG).write_text("{}")
    (partial / "metrics.json").write_text(json.dumps({"train_loss": loss}))
    if heldout_loss is not None:  # as the gate writes it
        (partial / "eval_report.json").write_text(json.dumps({"candidate_loss": heldout_loss}))
    registry.commit(name, partial)
    return name


def test_versions_are_numbered_and_only_complete_ones_are_listed(tmp_path):
    registry = AdapterRegistry(tmp_path)
    first, second = add_version(registry), add_version(registry, loss=0.5)
    assert (first, second) == ("lorebot-v0001", "lorebot-v0002")
    name, partial = registry.reserve()  # being written: invisible until committed
    (tmp_path / "lorebot-v0099").mkdir()  # no adapter_config.json: not an adapter
    assert [v.name for v in registry.versions()] == [first, second]
    assert registry.versions()[1].metrics == {"train_loss": 0.5}
    assert name == "lorebot-v0003" and partial.name == ".lorebot-v0003.partial"
    with pytest.raises(RegistryError, match="holds no adapter_config.json"):
        registry.commit(name, partial)
    with pytest.raises(RegistryError, match=r"no adapter version 'lorebot-v0099'.*known: lorebot-v0001, lorebot-v0002"):
        registry.path("lorebot-v0099")


def test_concurrent_reservations_never_share_a_name(tmp_path):
    registry = AdapterRegistry(tmp_path)
    names: list[str] = []
    threads = [threading.Thread(target=lambda: names.append(registry.reserve()[0])) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(names)) == 8


def test_promote_and_rollback_move_the_pointer_and_keep_history(tmp_path):
    registry = AdapterRegistry(tmp_path)
    v1, v2 = add_version(registry), add_version(registry)
    assert registry.promoted() is None
    registry.promote(v1)
    registry.promote(v2, reason="gate passed")
    assert registry.promoted() == v2 and registry.history() == [v1]
    assert [v.promoted for v in registry.versions()] == [False, True]
    assert registry.rollback() == v1 and registry.promoted() == v1
    assert registry.rollback() is None and registry.promoted() is None  # back to the base model
    with pytest.raises(RegistryError, match="nothing to roll back"):
        registry.rollback()


def test_a_failing_hook_leaves_the_previous_adapter_in_service(tmp_path):
    registry = AdapterRegistry(tmp_path)
    v1, v2 = add_version(registry), add_version(registry)
    registry.promote(v1)
    pointer = (tmp_path / "promoted.json").read_bytes()
    calls: list[str] = []

    def reload_fails(version, path):
        calls.append(version)
        raise RuntimeError("TGI did not come back")

    with pytest.raises(RegistryError, match="TGI did not come back"):
        registry.promote(v2, hook=reload_fails)
    assert calls == [v2] and registry.promoted() == v1
    assert (tmp_path / "promoted.json").read_bytes() == pointer
    assert not list(tmp_path.glob(".promoted.*"))  # no temporary file left behind


def test_a_command_hook_gets_the_version_and_path_and_its_failure_is_reported(tmp_path):
    registry = AdapterRegistry(tmp_path / "adapters")
    v1 = add_version(registry)
    seen = tmp_path / "seen"
    registry.promote(v1, hook=command_hook(f'echo "$LOREBOT_ADAPTER_VERSION $LOREBOT_ADAPTER_PATH" > {seen}'))
    assert seen.read_text().split() == [v1, str(tmp_path / "adapters" / v1)]
    v2 = add_version(registry)
    with pytest.raises(RegistryError, match=r"failed \(exit 3\): health check timed out"):
        registry.promote(v2, hook=command_hook("echo 'health check timed out' >&2; exit 3"))
    assert registry.promoted() == v1


def test_readers_never_see_a_half_written_pointer(tmp_path):
    registry = AdapterRegistry(tmp_path)
    versions = [add_version(registry) for _ in range(3)]
    stop = threading.Event()
    seen: set = set()
    errors: list[Exception] = []

    def read() -> None:
        while not stop.is_set():
            try:
                seen.add(registry.promoted())
            except Exception as e:  # a torn read would fail to parse
                errors.append(e)

    reader = threading.Thread(target=read)
    reader.start()
    for i in range(200):
        registry.write_promoted(versions[i % 3], history=[])
    stop.set()
    reader.join()
    assert not errors and seen <= {None, *versions}
