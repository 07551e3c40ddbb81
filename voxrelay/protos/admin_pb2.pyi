from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DecodeOverrides(_message.Message):
    __slots__ = ("language", "task", "beam_size", "temperature", "initial_prompt", "hotwords")
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    BEAM_SIZE_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    INITIAL_PROMPT_FIELD_NUMBER: _ClassVar[int]
    HOTWORDS_FIELD_NUMBER: _ClassVar[int]
    language: str
    task: str
    beam_size: int
    temperature: float
    initial_prompt: str
    hotwords: str
    def __init__(self, language: _Optional[str] = ..., task: _Optional[str] = ..., beam_size: _Optional[int] = ..., temperature: _Optional[float] = ..., initial_prompt: _Optional[str] = ..., hotwords: _Optional[str] = ...) -> None: ...

class DeploymentSpec(_message.Message):
    __slots__ = ("name", "model", "backend", "version", "compute_type", "options", "automation")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_TYPE_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    AUTOMATION_FIELD_NUMBER: _ClassVar[int]
    name: str
    model: str
    backend: str
    version: str
    compute_type: str
    options: DecodeOverrides
    automation: str
    def __init__(self, name: _Optional[str] = ..., model: _Optional[str] = ..., backend: _Optional[str] = ..., version: _Optional[str] = ..., compute_type: _Optional[str] = ..., options: _Optional[_Union[DecodeOverrides, _Mapping]] = ..., automation: _Optional[str] = ...) -> None: ...

class DeploymentStatus(_message.Message):
    __slots__ = ("spec", "role", "version", "compute", "multilingual", "results", "errors", "shadow_compared", "shadow_dropped")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_FIELD_NUMBER: _ClassVar[int]
    MULTILINGUAL_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    SHADOW_COMPARED_FIELD_NUMBER: _ClassVar[int]
    SHADOW_DROPPED_FIELD_NUMBER: _ClassVar[int]
    spec: DeploymentSpec
    role: str
    version: str
    compute: str
    multilingual: bool
    results: int
    errors: int
    shadow_compared: int
    shadow_dropped: int
    def __init__(self, spec: _Optional[_Union[DeploymentSpec, _Mapping]] = ..., role: _Optional[str] = ..., version: _Optional[str] = ..., compute: _Optional[str] = ..., multilingual: _Optional[bool] = ..., results: _Optional[int] = ..., errors: _Optional[int] = ..., shadow_compared: _Optional[int] = ..., shadow_dropped: _Optional[int] = ...) -> None: ...

class CheckResult(_message.Message):
    __slots__ = ("check", "result", "candidate", "baseline", "limit", "candidate_samples", "baseline_samples", "note")
    CHECK_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_FIELD_NUMBER: _ClassVar[int]
    BASELINE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    BASELINE_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    check: str
    result: str
    candidate: float
    baseline: float
    limit: str
    candidate_samples: int
    baseline_samples: int
    note: str
    def __init__(self, check: _Optional[str] = ..., result: _Optional[str] = ..., candidate: _Optional[float] = ..., baseline: _Optional[float] = ..., limit: _Optional[str] = ..., candidate_samples: _Optional[int] = ..., baseline_samples: _Optional[int] = ..., note: _Optional[str] = ...) -> None: ...

class Analysis(_message.Message):
    __slots__ = ("result", "checks", "age_seconds", "candidate", "baseline")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    CHECKS_FIELD_NUMBER: _ClassVar[int]
    AGE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_FIELD_NUMBER: _ClassVar[int]
    BASELINE_FIELD_NUMBER: _ClassVar[int]
    result: str
    checks: _containers.RepeatedCompositeFieldContainer[CheckResult]
    age_seconds: float
    candidate: str
    baseline: str
    def __init__(self, result: _Optional[str] = ..., checks: _Optional[_Iterable[_Union[CheckResult, _Mapping]]] = ..., age_seconds: _Optional[float] = ..., candidate: _Optional[str] = ..., baseline: _Optional[str] = ...) -> None: ...

class AuditEntry(_message.Message):
    __slots__ = ("time", "who", "action", "target", "why", "changes", "figures_json")
    TIME_FIELD_NUMBER: _ClassVar[int]
    WHO_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    WHY_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    FIGURES_JSON_FIELD_NUMBER: _ClassVar[int]
    time: str
    who: str
    action: str
    target: str
    why: str
    changes: _containers.RepeatedScalarFieldContainer[str]
    figures_json: str
    def __init__(self, time: _Optional[str] = ..., who: _Optional[str] = ..., action: _Optional[str] = ..., target: _Optional[str] = ..., why: _Optional[str] = ..., changes: _Optional[_Iterable[str]] = ..., figures_json: _Optional[str] = ...) -> None: ...

class RolloutStatus(_message.Message):
    __slots__ = ("deployments", "stable", "phase", "candidate", "weight", "mirror_percent", "steps", "previous", "previous_seconds_left", "verifying", "passes", "failures", "failure_limit", "promote_after", "auto_promote", "interval_seconds", "analysis", "recent", "audit_log", "review_queue")
    DEPLOYMENTS_FIELD_NUMBER: _ClassVar[int]
    STABLE_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    MIRROR_PERCENT_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_SECONDS_LEFT_FIELD_NUMBER: _ClassVar[int]
    VERIFYING_FIELD_NUMBER: _ClassVar[int]
    PASSES_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    FAILURE_LIMIT_FIELD_NUMBER: _ClassVar[int]
    PROMOTE_AFTER_FIELD_NUMBER: _ClassVar[int]
    AUTO_PROMOTE_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ANALYSIS_FIELD_NUMBER: _ClassVar[int]
    RECENT_FIELD_NUMBER: _ClassVar[int]
    AUDIT_LOG_FIELD_NUMBER: _ClassVar[int]
    REVIEW_QUEUE_FIELD_NUMBER: _ClassVar[int]
    deployments: _containers.RepeatedCompositeFieldContainer[DeploymentStatus]
    stable: str
    phase: str
    candidate: str
    weight: float
    mirror_percent: float
    steps: _containers.RepeatedScalarFieldContainer[float]
    previous: str
    previous_seconds_left: float
    verifying: bool
    passes: int
    failures: int
    failure_limit: int
    promote_after: int
    auto_promote: bool
    interval_seconds: float
    analysis: Analysis
    recent: _containers.RepeatedCompositeFieldContainer[AuditEntry]
    audit_log: str
    review_queue: str
    def __init__(self, deployments: _Optional[_Iterable[_Union[DeploymentStatus, _Mapping]]] = ..., stable: _Optional[str] = ..., phase: _Optional[str] = ..., candidate: _Optional[str] = ..., weight: _Optional[float] = ..., mirror_percent: _Optional[float] = ..., steps: _Optional[_Iterable[float]] = ..., previous: _Optional[str] = ..., previous_seconds_left: _Optional[float] = ..., verifying: _Optional[bool] = ..., passes: _Optional[int] = ..., failures: _Optional[int] = ..., failure_limit: _Optional[int] = ..., promote_after: _Optional[int] = ..., auto_promote: _Optional[bool] = ..., interval_seconds: _Optional[float] = ..., analysis: _Optional[_Union[Analysis, _Mapping]] = ..., recent: _Optional[_Iterable[_Union[AuditEntry, _Mapping]]] = ..., audit_log: _Optional[str] = ..., review_queue: _Optional[str] = ...) -> None: ...

class AddDeploymentRequest(_message.Message):
    __slots__ = ("spec", "reason")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    spec: DeploymentSpec
    reason: str
    def __init__(self, spec: _Optional[_Union[DeploymentSpec, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class RemoveDeploymentRequest(_message.Message):
    __slots__ = ("name", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    reason: str
    def __init__(self, name: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ShadowRequest(_message.Message):
    __slots__ = ("name", "mirror_percent", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MIRROR_PERCENT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    mirror_percent: float
    reason: str
    def __init__(self, name: _Optional[str] = ..., mirror_percent: _Optional[float] = ..., reason: _Optional[str] = ...) -> None: ...

class CanaryRequest(_message.Message):
    __slots__ = ("name", "steps", "weight", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    steps: _containers.RepeatedScalarFieldContainer[float]
    weight: float
    reason: str
    def __init__(self, name: _Optional[str] = ..., steps: _Optional[_Iterable[float]] = ..., weight: _Optional[float] = ..., reason: _Optional[str] = ...) -> None: ...

class PromoteRequest(_message.Message):
    __slots__ = ("name", "switch", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SWITCH_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    switch: bool
    reason: str
    def __init__(self, name: _Optional[str] = ..., switch: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class RollbackRequest(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class ChangeReply(_message.Message):
    __slots__ = ("changes", "status")
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    changes: _containers.RepeatedScalarFieldContainer[str]
    status: RolloutStatus
    def __init__(self, changes: _Optional[_Iterable[str]] = ..., status: _Optional[_Union[RolloutStatus, _Mapping]] = ...) -> None: ...

class AuditRequest(_message.Message):
    __slots__ = ("limit",)
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    limit: int
    def __init__(self, limit: _Optional[int] = ...) -> None: ...

class AuditReply(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[AuditEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[AuditEntry, _Mapping]]] = ...) -> None: ...

class ReviewListRequest(_message.Message):
    __slots__ = ("status", "deployment", "limit")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    status: str
    deployment: str
    limit: int
    def __init__(self, status: _Optional[str] = ..., deployment: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ReviewItem(_message.Message):
    __slots__ = ("id", "created", "deployment", "model", "segment_id", "reason", "why", "language", "model_text", "audio_seconds", "status", "final_text", "reviewer", "audio", "avg_logprob", "no_speech_prob", "compression_ratio", "skips")
    ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    WHY_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    MODEL_TEXT_FIELD_NUMBER: _ClassVar[int]
    AUDIO_SECONDS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    FINAL_TEXT_FIELD_NUMBER: _ClassVar[int]
    REVIEWER_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    AVG_LOGPROB_FIELD_NUMBER: _ClassVar[int]
    NO_SPEECH_PROB_FIELD_NUMBER: _ClassVar[int]
    COMPRESSION_RATIO_FIELD_NUMBER: _ClassVar[int]
    SKIPS_FIELD_NUMBER: _ClassVar[int]
    id: str
    created: str
    deployment: str
    model: str
    segment_id: str
    reason: str
    why: _containers.RepeatedScalarFieldContainer[str]
    language: str
    model_text: str
    audio_seconds: float
    status: str
    final_text: str
    reviewer: str
    audio: bytes
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float
    skips: int
    def __init__(self, id: _Optional[str] = ..., created: _Optional[str] = ..., deployment: _Optional[str] = ..., model: _Optional[str] = ..., segment_id: _Optional[str] = ..., reason: _Optional[str] = ..., why: _Optional[_Iterable[str]] = ..., language: _Optional[str] = ..., model_text: _Optional[str] = ..., audio_seconds: _Optional[float] = ..., status: _Optional[str] = ..., final_text: _Optional[str] = ..., reviewer: _Optional[str] = ..., audio: _Optional[bytes] = ..., avg_logprob: _Optional[float] = ..., no_speech_prob: _Optional[float] = ..., compression_ratio: _Optional[float] = ..., skips: _Optional[int] = ...) -> None: ...

class ReviewList(_message.Message):
    __slots__ = ("items", "pending")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[ReviewItem]
    pending: int
    def __init__(self, items: _Optional[_Iterable[_Union[ReviewItem, _Mapping]]] = ..., pending: _Optional[int] = ...) -> None: ...

class ReviewItemRequest(_message.Message):
    __slots__ = ("id", "with_audio")
    ID_FIELD_NUMBER: _ClassVar[int]
    WITH_AUDIO_FIELD_NUMBER: _ClassVar[int]
    id: str
    with_audio: bool
    def __init__(self, id: _Optional[str] = ..., with_audio: _Optional[bool] = ...) -> None: ...

class ReviewActionRequest(_message.Message):
    __slots__ = ("id", "action", "text")
    ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    id: str
    action: str
    text: str
    def __init__(self, id: _Optional[str] = ..., action: _Optional[str] = ..., text: _Optional[str] = ...) -> None: ...

class ExportReviewRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
