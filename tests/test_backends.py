"""Both Whisper backends with the real offline models on real speech.

Each backend is loaded once per module. The checkpoints and the joined base model go to a cache
directory private to this module.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from voxrelay.cloud.backends import BACKENDS, Backend, DecodeOptions, Transcript, load_backend
from voxrelay.errors import BackendError, InvalidArgument, MissingDependency, ModelNotFound

JFK = "asr/jfk_inaugural_1961.wav"
LIBRISPEECH = (
    "asr/librispeech_1272-128104-0000.wav",
    "asr/librispeech_1272-141231-0002.wav",
    "asr/librispeech_1272-128104-0004_8k.wav",
)
MULTILINGUAL = {
    "multilingual/picovoice_leopard_test_de.wav": "de",
    "multilingual/picovoice_leopard_test_es.wav": "es",
    "multilingual/picovoice_cheetah_test_de.wav": "de",
}
DEFAULT = DecodeOptions()


# --- without a model ------------------------------------------------------------------------------


def test_unknown_backend_names_both() -> None:
    with pytest.raises(InvalidArgument) as caught:
        load_backend("tiny.en", "whisper.cpp")
    assert "'whisper.cpp'" in str(caught.value)
    assert all(name in str(caught.value) for name in BACKENDS)


def test_unknown_model() -> None:
    with pytest.raises(ModelNotFound, match="known models"):
        load_backend("tiny.xx")


@pytest.mark.parametrize(
    ("backend", "module", "package", "extra"),
    [
        ("faster-whisper", "faster_whisper", "faster-whisper", "cloud"),
        ("openai-whisper", "whisper", "openai-whisper", "whisper"),
        ("openai-whisper", "torch", "torch", "whisper"),
    ],
)
def test_missing_dependency(
    backend: str, module: str, package: str, extra: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes the import fail
    with pytest.raises(MissingDependency) as caught:
        load_backend("tiny.en", backend)
    assert (caught.value.package, caught.value.extra) == (package, extra)
    assert f"pip install 'voxrelay[{extra}]'" in str(caught.value)


def test_float16_on_cpu_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="float16"):
        load_backend("tiny.en", compute_type="float16")


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    directory = tmp_path_factory.mktemp("voxrelay-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VOXRELAY_CACHE_DIR", str(directory))
        yield directory


@pytest.fixture(scope="module")
def audio(speech_dir: Path) -> Any:
    import soundfile

    def read(relative: str) -> np.ndarray:
        data, rate = soundfile.read(str(speech_dir / relative), dtype="float32")
        assert rate == 16000 and data.ndim == 1
        return data

    return read


@pytest.fixture(scope="module")
def references(manifest: list[dict[str, Any]]) -> dict[str, str]:
    return {row["audio"]: row["text"] for row in manifest if row.get("text_kind") == "human_reference"}


def _loaded(model: str, backend: str, **kwargs: Any) -> Iterator[Backend]:
    loaded = load_backend(model, backend, **kwargs)
    yield loaded
    loaded.close()


@pytest.fixture(scope="module")
def fw_tiny() -> Iterator[Backend]:
    yield from _loaded("tiny.en", "faster-whisper")


@pytest.fixture(scope="module")
def fw_tiny_f32() -> Iterator[Backend]:
    yield from _loaded("tiny.en", "faster-whisper", compute_type="float32")


@pytest.fixture(scope="module")
def ow_tiny() -> Iterator[Backend]:
    yield from _loaded("tiny.en", "openai-whisper")


@pytest.fixture(scope="module")
def fw_base() -> Iterator[Backend]:
    yield from _loaded("base", "faster-whisper")


@pytest.fixture(scope="module")
def ow_base() -> Iterator[Backend]:
    yield from _loaded("base", "openai-whisper")


@pytest.fixture(params=["faster-whisper", "openai-whisper"])
def tiny(request: pytest.FixtureRequest) -> Backend:
    name = "fw_tiny" if request.param == "faster-whisper" else "ow_tiny"
    return request.getfixturevalue(name)  # type: ignore[no-any-return]


@pytest.fixture(params=["faster-whisper", "openai-whisper"])
def base(request: pytest.FixtureRequest) -> Backend:
    name = "fw_base" if request.param == "faster-whisper" else "ow_base"
    return request.getfixturevalue(name)  # type: ignore[no-any-return]


def wer(references: list[str], hypotheses: list[str], english: bool = True) -> float:
    import jiwer
    from whisper_normalizer.basic import BasicTextNormalizer
    from whisper_normalizer.english import EnglishTextNormalizer

    normalize = EnglishTextNormalizer() if english else BasicTextNormalizer()
    return float(jiwer.wer([normalize(r) for r in references], [normalize(h) for h in hypotheses]))


# --- with the real models -------------------------------------------------------------------------


@pytest.mark.slow
def test_descriptors(fw_tiny: Backend, fw_tiny_f32: Backend, ow_tiny: Backend) -> None:
    assert fw_tiny.model.backend == "faster-whisper" and ow_tiny.model.backend == "openai-whisper"
    assert fw_tiny.model.name == ow_tiny.model.name == "tiny.en"
    assert fw_tiny.model.version == ow_tiny.model.version  # same weights, whatever the runtime
    assert len(fw_tiny.model.version) == 12 and not fw_tiny.model.multilingual
    assert fw_tiny.model.compute.startswith("cpu/int8")
    assert fw_tiny_f32.model.compute == "cpu/float32" and ow_tiny.model.compute == "cpu/float32"


@pytest.mark.slow
def test_tiny_en_word_error_rate(fw_tiny: Backend, audio: Any, references: dict[str, str]) -> None:
    files = (JFK, *LIBRISPEECH)
    results = [fw_tiny.transcribe(audio(f), DEFAULT) for f in files]
    assert wer([references[JFK]], [results[0].text]) <= 0.05, results[0].text
    assert wer([references[f] for f in files], [r.text for r in results]) < 0.15
    for result in results:
        assert (result.language, result.language_probability) == ("en", 1.0)
        assert result.phrases and result.avg_logprob > -1.0
        # Speech is taken for speech: the phrase holding most of it (a trailing window may be unsure).
        assert max(result.phrases, key=lambda p: p.end - p.start).no_speech_prob < 0.5, result.phrases
        assert 0.0 <= result.start < result.end


@pytest.mark.slow
@pytest.mark.parametrize("relative", [JFK, *LIBRISPEECH[:2]])
def test_backends_agree_on_tiny_en(
    relative: str, fw_tiny_f32: Backend, ow_tiny: Backend, audio: Any, references: dict[str, str]
) -> None:
    samples = audio(relative)
    fast, torch_ = fw_tiny_f32.transcribe(samples, DEFAULT), ow_tiny.transcribe(samples, DEFAULT)
    assert fast.text == torch_.text
    assert [p.text for p in fast.phrases] == [p.text for p in torch_.phrases]
    assert wer([references[relative]], [torch_.text]) < 0.15


@pytest.mark.slow
def test_word_timestamps(tiny: Backend, audio: Any) -> None:
    samples = audio(JFK)
    result = tiny.transcribe(samples, DecodeOptions(word_timestamps=True))
    assert len(result.words) == len(result.text.split())
    assert "".join(w.word for w in result.words).strip() == result.text
    starts = [w.start for w in result.words]
    assert starts == sorted(starts)
    assert all(0.0 <= w.start <= w.end <= len(samples) / 16000 + 0.5 for w in result.words)
    assert all(0.0 <= w.probability <= 1.0 for w in result.words)


@pytest.mark.slow
def test_no_words_unless_asked(fw_tiny: Backend, audio: Any) -> None:
    assert fw_tiny.transcribe(audio(LIBRISPEECH[0]), DEFAULT).words == ()


@pytest.mark.slow
def test_silence(tiny: Backend) -> None:
    result = tiny.transcribe(np.zeros(16000, dtype=np.float32), DEFAULT)
    assert len(result.text.split()) <= 1, result.text
    assert result.no_speech_prob > 0.5


@pytest.mark.slow
def test_english_only_model_ignores_another_language(tiny: Backend, audio: Any) -> None:
    result = tiny.transcribe(audio("asr/pocketsphinx_cards_001.wav"), DecodeOptions(language="de"))
    assert (result.language, result.language_probability) == ("en", 1.0)


@pytest.mark.slow
def test_temperature_is_reported(tiny: Backend, audio: Any) -> None:
    """Clear speech is decoded by beam search (temperature 0); a sampling temperature asked for is
    the one reported, phrase by phrase and for the transcript."""
    clear = tiny.transcribe(audio(JFK), DEFAULT)
    assert clear.phrases and clear.temperature == 0.0
    sampled = tiny.transcribe(audio(JFK), DecodeOptions(temperature=0.6))
    assert sampled.phrases and [p.temperature for p in sampled.phrases] == pytest.approx([0.6] * len(sampled.phrases))
    assert sampled.temperature == pytest.approx(0.6)


def test_prompt_and_hotwords(tiny: Backend, audio: Any) -> None:
    options = DecodeOptions(initial_prompt="A lecture on art.", hotwords="Quilter")
    result = tiny.transcribe(audio(LIBRISPEECH[0]), options)
    assert "Quilter" in result.text


@pytest.mark.slow
@pytest.mark.parametrize("relative", list(MULTILINGUAL))
def test_base_detects_the_language(relative: str, fw_base: Backend, audio: Any, references: dict[str, str]) -> None:
    result = fw_base.transcribe(audio(relative), DEFAULT)
    assert result.language == MULTILINGUAL[relative]
    assert 0.9 < result.language_probability <= 1.0
    assert wer([references[relative]], [result.text], english=False) < 0.35, result.text


@pytest.mark.slow
def test_openai_base_detects_the_language(ow_base: Backend, fw_base: Backend, audio: Any) -> None:
    assert ow_base.model.multilingual and ow_base.model.version == fw_base.model.version
    for relative in list(MULTILINGUAL)[:2]:
        result = ow_base.transcribe(audio(relative), DEFAULT)
        assert result.language == MULTILINGUAL[relative]
        assert 0.9 < result.language_probability <= 1.0


@pytest.mark.slow
def test_given_language_is_used(base: Backend, audio: Any) -> None:
    result = base.transcribe(audio("multilingual/picovoice_cheetah_test_de.wav"), DecodeOptions(language="de"))
    assert (result.language, result.language_probability) == ("de", 1.0)
    assert "Werbung" in result.text


@pytest.mark.slow
@pytest.mark.parametrize(
    ("samples", "message"),
    [
        (np.zeros((2, 16000), dtype=np.float32), "1-D"),
        (np.zeros(16000, dtype=np.int16), "float"),
        (np.zeros(0, dtype=np.float32), "empty"),
        (np.full(16000, np.nan, dtype=np.float32), "NaN"),
    ],
)
def test_bad_audio(tiny: Backend, samples: np.ndarray, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        tiny.transcribe(samples, DEFAULT)


@pytest.mark.slow
def test_closed_backend_refuses_work() -> None:
    backend = load_backend("tiny.en")
    backend.close()
    with pytest.raises(BackendError, match="closed"):
        backend.transcribe(np.zeros(16000, dtype=np.float32), DEFAULT)


def _in_threads(backend: Backend, segments: list[np.ndarray]) -> list[Transcript]:
    results: list[Transcript | None] = [None] * len(segments)

    def run(i: int) -> None:
        results[i] = backend.transcribe(segments[i], DEFAULT)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(segments))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert all(r is not None for r in results)
    return [r for r in results if r is not None]


@pytest.mark.slow
def test_concurrent_transcriptions_faster_whisper(audio: Any) -> None:
    backend = load_backend("tiny.en", num_workers=2)
    try:
        segments = [audio(JFK), audio(LIBRISPEECH[0]), audio("asr/pocketsphinx_cards_005.wav")]
        sequential = [backend.transcribe(s, DEFAULT).text for s in segments]
        assert [r.text for r in _in_threads(backend, segments)] == sequential
    finally:
        backend.close()


@pytest.mark.slow
def test_concurrent_transcriptions_openai_whisper(ow_tiny: Backend, audio: Any) -> None:
    segments = [audio("asr/pocketsphinx_cards_001.wav"), audio("asr/pocketsphinx_goforward.wav")]
    sequential = [ow_tiny.transcribe(s, DEFAULT).text for s in segments]
    assert [r.text for r in _in_threads(ow_tiny, segments)] == sequential
