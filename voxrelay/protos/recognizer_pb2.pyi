from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AudioEncoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AUDIO_ENCODING_UNSPECIFIED: _ClassVar[AudioEncoding]
    LINEAR16: _ClassVar[AudioEncoding]
    FLOAT32: _ClassVar[AudioEncoding]

class Task(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_UNSPECIFIED: _ClassVar[Task]
    TRANSCRIBE: _ClassVar[Task]
    TRANSLATE: _ClassVar[Task]
AUDIO_ENCODING_UNSPECIFIED: AudioEncoding
LINEAR16: AudioEncoding
FLOAT32: AudioEncoding
TASK_UNSPECIFIED: Task
TRANSCRIBE: Task
TRANSLATE: Task

class AudioFormat(_message.Message):
    __slots__ = ("encoding", "sample_rate_hz", "channels")
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    encoding: AudioEncoding
    sample_rate_hz: int
    channels: int
    def __init__(self, encoding: _Optional[_Union[AudioEncoding, str]] = ..., sample_rate_hz: _Optional[int] = ..., channels: _Optional[int] = ...) -> None: ...

class RecognitionOptions(_message.Message):
    __slots__ = ("language", "model", "word_timestamps", "initial_prompt", "hotwords", "beam_size", "task")
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    WORD_TIMESTAMPS_FIELD_NUMBER: _ClassVar[int]
    INITIAL_PROMPT_FIELD_NUMBER: _ClassVar[int]
    HOTWORDS_FIELD_NUMBER: _ClassVar[int]
    BEAM_SIZE_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    language: str
    model: str
    word_timestamps: bool
    initial_prompt: str
    hotwords: str
    beam_size: int
    task: Task
    def __init__(self, language: _Optional[str] = ..., model: _Optional[str] = ..., word_timestamps: _Optional[bool] = ..., initial_prompt: _Optional[str] = ..., hotwords: _Optional[str] = ..., beam_size: _Optional[int] = ..., task: _Optional[_Union[Task, str]] = ...) -> None: ...

class SessionConfig(_message.Message):
    __slots__ = ("device_id", "session_id", "format", "options", "client", "interim_results", "interim_interval_seconds")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    INTERIM_RESULTS_FIELD_NUMBER: _ClassVar[int]
    INTERIM_INTERVAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    session_id: str
    format: AudioFormat
    options: RecognitionOptions
    client: str
    interim_results: bool
    interim_interval_seconds: float
    def __init__(self, device_id: _Optional[str] = ..., session_id: _Optional[str] = ..., format: _Optional[_Union[AudioFormat, _Mapping]] = ..., options: _Optional[_Union[RecognitionOptions, _Mapping]] = ..., client: _Optional[str] = ..., interim_results: _Optional[bool] = ..., interim_interval_seconds: _Optional[float] = ...) -> None: ...

class SegmentStart(_message.Message):
    __slots__ = ("segment_id", "sequence", "offset_seconds")
    SEGMENT_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    OFFSET_SECONDS_FIELD_NUMBER: _ClassVar[int]
    segment_id: str
    sequence: int
    offset_seconds: float
    def __init__(self, segment_id: _Optional[str] = ..., sequence: _Optional[int] = ..., offset_seconds: _Optional[float] = ...) -> None: ...

class AudioChunk(_message.Message):
    __slots__ = ("audio",)
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    audio: bytes
    def __init__(self, audio: _Optional[bytes] = ...) -> None: ...

class VadStats(_message.Message):
    __slots__ = ("vad", "speech_ratio", "mean_speech_probability", "level_dbfs", "clipping_ratio", "forced_split", "pre_roll_seconds", "hangover_seconds")
    VAD_FIELD_NUMBER: _ClassVar[int]
    SPEECH_RATIO_FIELD_NUMBER: _ClassVar[int]
    MEAN_SPEECH_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    LEVEL_DBFS_FIELD_NUMBER: _ClassVar[int]
    CLIPPING_RATIO_FIELD_NUMBER: _ClassVar[int]
    FORCED_SPLIT_FIELD_NUMBER: _ClassVar[int]
    PRE_ROLL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    HANGOVER_SECONDS_FIELD_NUMBER: _ClassVar[int]
    vad: str
    speech_ratio: float
    mean_speech_probability: float
    level_dbfs: float
    clipping_ratio: float
    forced_split: bool
    pre_roll_seconds: float
    hangover_seconds: float
    def __init__(self, vad: _Optional[str] = ..., speech_ratio: _Optional[float] = ..., mean_speech_probability: _Optional[float] = ..., level_dbfs: _Optional[float] = ..., clipping_ratio: _Optional[float] = ..., forced_split: _Optional[bool] = ..., pre_roll_seconds: _Optional[float] = ..., hangover_seconds: _Optional[float] = ...) -> None: ...

class SegmentPause(_message.Message):
    __slots__ = ("segment_id",)
    SEGMENT_ID_FIELD_NUMBER: _ClassVar[int]
    segment_id: str
    def __init__(self, segment_id: _Optional[str] = ...) -> None: ...

class SegmentEnd(_message.Message):
    __slots__ = ("segment_id", "vad")
    SEGMENT_ID_FIELD_NUMBER: _ClassVar[int]
    VAD_FIELD_NUMBER: _ClassVar[int]
    segment_id: str
    vad: VadStats
    def __init__(self, segment_id: _Optional[str] = ..., vad: _Optional[_Union[VadStats, _Mapping]] = ...) -> None: ...

class StreamRequest(_message.Message):
    __slots__ = ("config", "start", "audio", "end", "pause")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    PAUSE_FIELD_NUMBER: _ClassVar[int]
    config: SessionConfig
    start: SegmentStart
    audio: AudioChunk
    end: SegmentEnd
    pause: SegmentPause
    def __init__(self, config: _Optional[_Union[SessionConfig, _Mapping]] = ..., start: _Optional[_Union[SegmentStart, _Mapping]] = ..., audio: _Optional[_Union[AudioChunk, _Mapping]] = ..., end: _Optional[_Union[SegmentEnd, _Mapping]] = ..., pause: _Optional[_Union[SegmentPause, _Mapping]] = ...) -> None: ...

class SessionAccepted(_message.Message):
    __slots__ = ("session_id", "model", "limits")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    model: ModelInfo
    limits: Limits
    def __init__(self, session_id: _Optional[str] = ..., model: _Optional[_Union[ModelInfo, _Mapping]] = ..., limits: _Optional[_Union[Limits, _Mapping]] = ...) -> None: ...

class SegmentAck(_message.Message):
    __slots__ = ("segment_id", "audio_seconds", "duplicate")
    SEGMENT_ID_FIELD_NUMBER: _ClassVar[int]
    AUDIO_SECONDS_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    segment_id: str
    audio_seconds: float
    duplicate: bool
    def __init__(self, segment_id: _Optional[str] = ..., audio_seconds: _Optional[float] = ..., duplicate: _Optional[bool] = ...) -> None: ...

class SegmentError(_message.Message):
    __slots__ = ("segment_id", "code", "message")
    SEGMENT_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    segment_id: str
    code: str
    message: str
    def __init__(self, segment_id: _Optional[str] = ..., code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class StreamResponse(_message.Message):
    __slots__ = ("accepted", "ack", "result", "error", "interim")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    INTERIM_FIELD_NUMBER: _ClassVar[int]
    accepted: SessionAccepted
    ack: SegmentAck
    result: RecognitionResult
    error: SegmentError
    interim: RecognitionResult
    def __init__(self, accepted: _Optional[_Union[SessionAccepted, _Mapping]] = ..., ack: _Optional[_Union[SegmentAck, _Mapping]] = ..., result: _Optional[_Union[RecognitionResult, _Mapping]] = ..., error: _Optional[_Union[SegmentError, _Mapping]] = ..., interim: _Optional[_Union[RecognitionResult, _Mapping]] = ...) -> None: ...

class Word(_message.Message):
    __slots__ = ("word", "start_seconds", "end_seconds", "probability")
    WORD_FIELD_NUMBER: _ClassVar[int]
    START_SECONDS_FIELD_NUMBER: _ClassVar[int]
    END_SECONDS_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    word: str
    start_seconds: float
    end_seconds: float
    probability: float
    def __init__(self, word: _Optional[str] = ..., start_seconds: _Optional[float] = ..., end_seconds: _Optional[float] = ..., probability: _Optional[float] = ...) -> None: ...

class Phrase(_message.Message):
    __slots__ = ("text", "start_seconds", "end_seconds", "avg_logprob", "no_speech_prob", "compression_ratio", "temperature")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    START_SECONDS_FIELD_NUMBER: _ClassVar[int]
    END_SECONDS_FIELD_NUMBER: _ClassVar[int]
    AVG_LOGPROB_FIELD_NUMBER: _ClassVar[int]
    NO_SPEECH_PROB_FIELD_NUMBER: _ClassVar[int]
    COMPRESSION_RATIO_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    text: str
    start_seconds: float
    end_seconds: float
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float
    temperature: float
    def __init__(self, text: _Optional[str] = ..., start_seconds: _Optional[float] = ..., end_seconds: _Optional[float] = ..., avg_logprob: _Optional[float] = ..., no_speech_prob: _Optional[float] = ..., compression_ratio: _Optional[float] = ..., temperature: _Optional[float] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "version", "backend", "multilingual", "compute")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    MULTILINGUAL_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    backend: str
    multilingual: bool
    compute: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., backend: _Optional[str] = ..., multilingual: _Optional[bool] = ..., compute: _Optional[str] = ...) -> None: ...

class Timings(_message.Message):
    __slots__ = ("queue_wait_seconds", "inference_seconds", "audio_seconds", "batch_size", "speculative")
    QUEUE_WAIT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    AUDIO_SECONDS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    SPECULATIVE_FIELD_NUMBER: _ClassVar[int]
    queue_wait_seconds: float
    inference_seconds: float
    audio_seconds: float
    batch_size: int
    speculative: bool
    def __init__(self, queue_wait_seconds: _Optional[float] = ..., inference_seconds: _Optional[float] = ..., audio_seconds: _Optional[float] = ..., batch_size: _Optional[int] = ..., speculative: _Optional[bool] = ...) -> None: ...

class RecognitionResult(_message.Message):
    __slots__ = ("segment_id", "text", "start_seconds", "end_seconds", "words", "phrases", "language", "language_probability", "avg_logprob", "no_speech_prob", "compression_ratio", "model", "slot", "timings", "deployment", "needs_review", "review_id", "temperature", "interim")
    SEGMENT_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    START_SECONDS_FIELD_NUMBER: _ClassVar[int]
    END_SECONDS_FIELD_NUMBER: _ClassVar[int]
    WORDS_FIELD_NUMBER: _ClassVar[int]
    PHRASES_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    AVG_LOGPROB_FIELD_NUMBER: _ClassVar[int]
    NO_SPEECH_PROB_FIELD_NUMBER: _ClassVar[int]
    COMPRESSION_RATIO_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SLOT_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    NEEDS_REVIEW_FIELD_NUMBER: _ClassVar[int]
    REVIEW_ID_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    INTERIM_FIELD_NUMBER: _ClassVar[int]
    segment_id: str
    text: str
    start_seconds: float
    end_seconds: float
    words: _containers.RepeatedCompositeFieldContainer[Word]
    phrases: _containers.RepeatedCompositeFieldContainer[Phrase]
    language: str
    language_probability: float
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float
    model: ModelInfo
    slot: str
    timings: Timings
    deployment: str
    needs_review: bool
    review_id: str
    temperature: float
    interim: bool
    def __init__(self, segment_id: _Optional[str] = ..., text: _Optional[str] = ..., start_seconds: _Optional[float] = ..., end_seconds: _Optional[float] = ..., words: _Optional[_Iterable[_Union[Word, _Mapping]]] = ..., phrases: _Optional[_Iterable[_Union[Phrase, _Mapping]]] = ..., language: _Optional[str] = ..., language_probability: _Optional[float] = ..., avg_logprob: _Optional[float] = ..., no_speech_prob: _Optional[float] = ..., compression_ratio: _Optional[float] = ..., model: _Optional[_Union[ModelInfo, _Mapping]] = ..., slot: _Optional[str] = ..., timings: _Optional[_Union[Timings, _Mapping]] = ..., deployment: _Optional[str] = ..., needs_review: _Optional[bool] = ..., review_id: _Optional[str] = ..., temperature: _Optional[float] = ..., interim: _Optional[bool] = ...) -> None: ...

class RecognizeRequest(_message.Message):
    __slots__ = ("format", "options", "audio")
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    format: AudioFormat
    options: RecognitionOptions
    audio: bytes
    def __init__(self, format: _Optional[_Union[AudioFormat, _Mapping]] = ..., options: _Optional[_Union[RecognitionOptions, _Mapping]] = ..., audio: _Optional[bytes] = ...) -> None: ...

class GetInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Limits(_message.Message):
    __slots__ = ("max_segment_seconds", "max_chunk_bytes", "max_concurrent_streams", "min_sample_rate_hz", "max_sample_rate_hz", "max_queued_audio_seconds", "max_pending_segments", "stream_idle_seconds", "max_client_streams", "max_queued_work_seconds", "max_client_queued_work_seconds", "min_audio_rate", "max_prompt_tokens")
    MAX_SEGMENT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_CHUNK_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENT_STREAMS_FIELD_NUMBER: _ClassVar[int]
    MIN_SAMPLE_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    MAX_SAMPLE_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    MAX_QUEUED_AUDIO_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_PENDING_SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    STREAM_IDLE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_CLIENT_STREAMS_FIELD_NUMBER: _ClassVar[int]
    MAX_QUEUED_WORK_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_CLIENT_QUEUED_WORK_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MIN_AUDIO_RATE_FIELD_NUMBER: _ClassVar[int]
    MAX_PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    max_segment_seconds: float
    max_chunk_bytes: int
    max_concurrent_streams: int
    min_sample_rate_hz: int
    max_sample_rate_hz: int
    max_queued_audio_seconds: float
    max_pending_segments: int
    stream_idle_seconds: float
    max_client_streams: int
    max_queued_work_seconds: float
    max_client_queued_work_seconds: float
    min_audio_rate: float
    max_prompt_tokens: int
    def __init__(self, max_segment_seconds: _Optional[float] = ..., max_chunk_bytes: _Optional[int] = ..., max_concurrent_streams: _Optional[int] = ..., min_sample_rate_hz: _Optional[int] = ..., max_sample_rate_hz: _Optional[int] = ..., max_queued_audio_seconds: _Optional[float] = ..., max_pending_segments: _Optional[int] = ..., stream_idle_seconds: _Optional[float] = ..., max_client_streams: _Optional[int] = ..., max_queued_work_seconds: _Optional[float] = ..., max_client_queued_work_seconds: _Optional[float] = ..., min_audio_rate: _Optional[float] = ..., max_prompt_tokens: _Optional[int] = ...) -> None: ...

class InferenceInfo(_message.Message):
    __slots__ = ("workers", "cpu_threads", "max_batch", "max_wait_ms", "cores")
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    CPU_THREADS_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_FIELD_NUMBER: _ClassVar[int]
    MAX_WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    CORES_FIELD_NUMBER: _ClassVar[int]
    workers: int
    cpu_threads: int
    max_batch: int
    max_wait_ms: float
    cores: int
    def __init__(self, workers: _Optional[int] = ..., cpu_threads: _Optional[int] = ..., max_batch: _Optional[int] = ..., max_wait_ms: _Optional[float] = ..., cores: _Optional[int] = ...) -> None: ...

class ServerInfo(_message.Message):
    __slots__ = ("server_version", "models", "limits", "encodings", "monitoring", "inference")
    SERVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    ENCODINGS_FIELD_NUMBER: _ClassVar[int]
    MONITORING_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_FIELD_NUMBER: _ClassVar[int]
    server_version: str
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    limits: Limits
    encodings: _containers.RepeatedScalarFieldContainer[AudioEncoding]
    monitoring: _containers.RepeatedCompositeFieldContainer[MonitoringInfo]
    inference: InferenceInfo
    def __init__(self, server_version: _Optional[str] = ..., models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ..., limits: _Optional[_Union[Limits, _Mapping]] = ..., encodings: _Optional[_Iterable[_Union[AudioEncoding, str]]] = ..., monitoring: _Optional[_Iterable[_Union[MonitoringInfo, _Mapping]]] = ..., inference: _Optional[_Union[InferenceInfo, _Mapping]] = ...) -> None: ...

class MonitoringInfo(_message.Message):
    __slots__ = ("model", "reference_source", "reference_origin", "reference_segments", "learn_segments", "reference_created", "drifting", "estimated_wer")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_SOURCE_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_ORIGIN_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    LEARN_SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_CREATED_FIELD_NUMBER: _ClassVar[int]
    DRIFTING_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_WER_FIELD_NUMBER: _ClassVar[int]
    model: str
    reference_source: str
    reference_origin: str
    reference_segments: int
    learn_segments: int
    reference_created: str
    drifting: _containers.RepeatedScalarFieldContainer[str]
    estimated_wer: float
    def __init__(self, model: _Optional[str] = ..., reference_source: _Optional[str] = ..., reference_origin: _Optional[str] = ..., reference_segments: _Optional[int] = ..., learn_segments: _Optional[int] = ..., reference_created: _Optional[str] = ..., drifting: _Optional[_Iterable[str]] = ..., estimated_wer: _Optional[float] = ...) -> None: ...
