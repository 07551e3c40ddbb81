"""Convert a CTranslate2 Whisper model into an openai-whisper checkpoint, losslessly.

CTranslate2's ``model.bin`` (see ``ctranslate2/specs/model_spec.py``, ``_serialize``) is:
binary version (u32), spec name (string), spec revision (u32), the number of variables (u32), then
per variable its name (string), rank (u8), dims (u32 each), dtype id (u8), byte count (u32) and raw
bytes; then the number of aliases (u32) and (alias, target) string pairs. A string is a u16 length
(including a trailing NUL) and UTF-8 bytes. All little-endian.

The variable names follow CTranslate2's Whisper spec (``encoder/layer_0/self_attention/linear_0``...),
with the self-attention query/key/value projections fused into one matrix and the cross-attention
key/value fused into another. Splitting them back gives openai-whisper's state dict; the key bias
in the fused matrices is zero, because Whisper's key projection has none. Weights become float32
tensors (openai-whisper runs float32 on CPU).

torch is imported only when a checkpoint is written.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
import struct
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from voxrelay.errors import ModelNotFound

from .catalogue import ResolvedModel, atomic_file, cache_dir, cache_lock, local_model, model_version

_SUPPORTED_BINARY_VERSIONS = (6,)
# CTranslate2's DataType enum order (include/ctranslate2/types.h).
# bfloat16 is read as uint16 and widened by hand.
_DTYPES: tuple[np.dtype, ...] = tuple(np.dtype(t) for t in ("<f4", "i1", "<i2", "<i4", "<f2", "<u2"))
_BFLOAT16 = 5


@dataclass(frozen=True)
class WhisperDims:
    """openai-whisper's ``ModelDimensions``, inferred from the tensor shapes."""

    n_mels: int
    n_audio_ctx: int
    n_audio_state: int
    n_audio_head: int
    n_audio_layer: int
    n_vocab: int
    n_text_ctx: int
    n_text_state: int
    n_text_head: int
    n_text_layer: int

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"WhisperDims.{name}: {value!r} is not a positive integer")


def read_ct2_variables(model_bin: str | Path) -> dict[str, np.ndarray]:
    """Read every variable of a CTranslate2 ``model.bin`` as float32 (or integer scalars)."""
    data = memoryview(Path(model_bin).read_bytes())
    offset = 0

    def take(fmt: str) -> int:
        nonlocal offset
        (value,) = struct.unpack_from("<" + fmt, data, offset)
        offset += struct.calcsize("<" + fmt)
        return int(value)

    def string() -> str:
        nonlocal offset
        length = take("H")
        text = bytes(data[offset : offset + length - 1]).decode("utf-8")
        offset += length
        return text

    version = take("I")
    if version not in _SUPPORTED_BINARY_VERSIONS:
        raise ValueError(
            f"{model_bin}: CTranslate2 binary version {version} is not supported "
            f"(expected {_SUPPORTED_BINARY_VERSIONS}); re-convert the model with a current ctranslate2"
        )
    spec = string()
    take("I")  # spec revision
    if spec != "WhisperSpec":
        raise ValueError(f"{model_bin}: a {spec!r} model, not a Whisper model")
    raw: dict[str, np.ndarray] = {}
    for _ in range(take("I")):
        name = string()
        shape = tuple(take("I") for _ in range(take("B")))
        type_id = take("B")
        nbytes = take("I")
        if type_id >= len(_DTYPES):
            raise ValueError(f"{model_bin}: variable {name} has unknown dtype id {type_id}")
        array = np.frombuffer(data[offset : offset + nbytes], dtype=_DTYPES[type_id]).reshape(shape)
        offset += nbytes
        if type_id == _BFLOAT16:
            array = (array.astype(np.uint32) << 16).view(np.float32)
        raw[name] = array
    for _ in range(take("I")):
        alias, target = string(), string()
        raw[alias] = raw[target]
    return _dequantize(raw)


def _dequantize(raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Float variables to float32; int8/int16 weights with a ``weight_scale`` back to float32."""
    out: dict[str, np.ndarray] = {}
    for name, value in raw.items():
        if name.endswith("/weight_scale"):
            continue
        scale = raw.get(name + "_scale") if name.endswith("/weight") else None
        if scale is not None and value.dtype.kind == "i":
            shape = (-1,) + (1,) * (value.ndim - 1)
            out[name] = value.astype(np.float32) / scale.astype(np.float32).reshape(shape)
        elif value.dtype.kind == "f":
            out[name] = value.astype(np.float32)
        else:
            out[name] = value
    return out


def infer_dims(variables: dict[str, np.ndarray]) -> WhisperDims:
    def layers(prefix: str) -> int:
        pattern = re.compile(rf"^{prefix}/layer_(\d+)/")
        found = {int(m.group(1)) for name in variables if (m := pattern.match(name))}
        return max(found) + 1 if found else 0

    audio_pos = variables["encoder/position_encodings/encodings"]
    text_pos = variables["decoder/position_encodings/encodings"]
    return WhisperDims(
        n_mels=int(variables["encoder/conv1/weight"].shape[1]),
        n_audio_ctx=int(audio_pos.shape[0]),
        n_audio_state=int(audio_pos.shape[1]),
        n_audio_head=int(variables["encoder/num_heads"]),
        n_audio_layer=layers("encoder"),
        n_vocab=int(variables["decoder/embeddings/weight"].shape[0]),
        n_text_ctx=int(text_pos.shape[0]),
        n_text_state=int(text_pos.shape[1]),
        n_text_head=int(variables["decoder/num_heads"]),
        n_text_layer=layers("decoder"),
    )


def openai_state_dict(variables: dict[str, np.ndarray], dims: WhisperDims) -> dict[str, np.ndarray]:
    """Map CTranslate2 variable names to openai-whisper's, splitting the fused projections."""
    sd: dict[str, np.ndarray] = {}

    def linear(dst: str, src: str, bias: bool = True) -> None:
        sd[f"{dst}.weight"] = variables[f"{src}/weight"]
        if bias:
            sd[f"{dst}.bias"] = variables[f"{src}/bias"]

    def norm(dst: str, src: str) -> None:
        sd[f"{dst}.weight"] = variables[f"{src}/gamma"]
        sd[f"{dst}.bias"] = variables[f"{src}/beta"]

    def split(dst: str, names: tuple[str, ...], src: str) -> None:
        weights = np.split(variables[f"{src}/weight"], len(names), axis=0)
        biases = np.split(variables[f"{src}/bias"], len(names), axis=0)
        for name, weight, b in zip(names, weights, biases, strict=True):
            sd[f"{dst}.{name}.weight"] = weight
            if name == "key":
                if np.any(b != 0):
                    raise ValueError(f"{src}: the key projection has a bias; openai-whisper has none")
            else:
                sd[f"{dst}.{name}.bias"] = b

    def ffn_and_self_attention(dst: str, src: str) -> None:
        norm(f"{dst}.attn_ln", f"{src}/self_attention/layer_norm")
        split(f"{dst}.attn", ("query", "key", "value"), f"{src}/self_attention/linear_0")
        linear(f"{dst}.attn.out", f"{src}/self_attention/linear_1")
        norm(f"{dst}.mlp_ln", f"{src}/ffn/layer_norm")
        linear(f"{dst}.mlp.0", f"{src}/ffn/linear_0")
        linear(f"{dst}.mlp.2", f"{src}/ffn/linear_1")

    linear("encoder.conv1", "encoder/conv1")
    linear("encoder.conv2", "encoder/conv2")
    sd["encoder.positional_embedding"] = variables["encoder/position_encodings/encodings"]
    for i in range(dims.n_audio_layer):
        ffn_and_self_attention(f"encoder.blocks.{i}", f"encoder/layer_{i}")
    norm("encoder.ln_post", "encoder/layer_norm")

    sd["decoder.token_embedding.weight"] = variables["decoder/embeddings/weight"]
    sd["decoder.positional_embedding"] = variables["decoder/position_encodings/encodings"]
    for i in range(dims.n_text_layer):
        dst, src = f"decoder.blocks.{i}", f"decoder/layer_{i}"
        ffn_and_self_attention(dst, src)
        norm(f"{dst}.cross_attn_ln", f"{src}/attention/layer_norm")
        linear(f"{dst}.cross_attn.query", f"{src}/attention/linear_0")
        split(f"{dst}.cross_attn", ("key", "value"), f"{src}/attention/linear_1")
        linear(f"{dst}.cross_attn.out", f"{src}/attention/linear_2")
    norm("decoder.ln", "decoder/layer_norm")
    return sd


def convert_ct2_to_openai(ct2_dir: str, out_path: str) -> str:
    """Write an openai-whisper checkpoint (``{"dims", "model_state_dict"}``) for a CT2 model directory.

    The file is written beside ``out_path`` and renamed into place, so readers never see half of it.
    Returns ``out_path``.
    """
    model_bin = Path(ct2_dir) / "model.bin"
    if not model_bin.is_file():
        raise ModelNotFound(f"{ct2_dir} is not a CTranslate2 model directory (no model.bin)")
    import torch

    variables = read_ct2_variables(model_bin)
    dims = infer_dims(variables)
    state = {
        name: torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
        for name, array in openai_state_dict(variables, dims).items()
    }
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(out) as f:
        torch.save({"dims": asdict(dims), "model_state_dict": state}, f)
    return str(out)


def openai_checkpoint(resolved: ResolvedModel) -> str:
    """The cached openai-whisper checkpoint of ``resolved``, converted on first use.

    Lives in ``cache_dir()/openai-whisper/<name>-<version>.pt``; the version is the content
    version of the CTranslate2 ``model.bin``, so a changed model gets a new checkpoint.
    """
    local = local_model(resolved)
    assert local.path is not None
    safe_name = re.sub(r"[^A-Za-z0-9._-]+", "_", local.name)
    target = cache_dir() / "openai-whisper" / f"{safe_name}-{model_version(local.path)}.pt"
    with cache_lock(target.parent):  # one conversion at a time; an interrupted one's temporary file goes
        if target.is_file():
            return str(target)
        return convert_ct2_to_openai(local.path, str(target))


def read_alignment_heads(ct2_dir: str) -> list[tuple[int, int]] | None:
    """The ``alignment_heads`` (layer, head) pairs from a CT2 model's config.json, if it lists them."""
    try:
        config = json.loads((Path(ct2_dir) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    heads = config.get("alignment_heads") if isinstance(config, dict) else None
    if not heads:
        return None
    return [(int(layer), int(head)) for layer, head in heads]


def alignment_heads_dump(heads: list[tuple[int, int]], n_text_layer: int, n_text_head: int) -> bytes:
    """Encode heads the way ``whisper.model.Whisper.set_alignment_heads`` reads them."""
    mask = np.zeros((n_text_layer, n_text_head), dtype=bool)
    for layer, head in heads:
        if not (0 <= layer < n_text_layer and 0 <= head < n_text_head):
            raise ValueError(f"alignment head ({layer}, {head}) is outside {n_text_layer}x{n_text_head}")
        mask[layer, head] = True
    return base64.b85encode(gzip.compress(mask.tobytes()))
