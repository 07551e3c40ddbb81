"""Building a server's rollout from its settings: the deployments, the controller, admin tokens."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from prometheus_client import CollectorRegistry

from voxrelay.cloud.engine import InferenceEngine
from voxrelay.cloud.rollout.admin import check_distinct
from voxrelay.cloud.rollout.config import DeploymentSpec, RolloutConfig, for_models, load_config
from voxrelay.cloud.rollout.controller import RolloutController
from voxrelay.cloud.rollout.engines import EngineOptions
from voxrelay.cloud.rollout.metrics import RolloutMetrics
from voxrelay.cloud.security import TokenSet
from voxrelay.cloud.settings import ServerSettings


def deployments_config(settings: ServerSettings) -> RolloutConfig:
    """The deployments file of ``--deployments``, else one deployment per ``--model``."""
    if settings.deployments_file is None:
        return for_models(settings.models, settings.backend, settings.compute_type)
    defaults = DeploymentSpec(name="default", backend=settings.backend, compute_type=settings.compute_type)
    return load_config(settings.deployments_file, defaults)


async def build_rollout(
    settings: ServerSettings,
    registry: CollectorRegistry,
    engines: Mapping[str, InferenceEngine] | None = None,
    config: RolloutConfig | None = None,
) -> RolloutController:
    """Load the deployments (off the event loop: seconds per model) and their controller."""
    config = config if config is not None else deployments_config(settings)
    return await asyncio.to_thread(
        RolloutController.load,
        config,
        RolloutMetrics(registry),
        engines,
        engine_options=EngineOptions.from_settings(settings),
        data_dir=settings.data_directory,
    )


def admin_tokens(settings: ServerSettings, devices: TokenSet | None) -> TokenSet | None:
    """The admin tokens (None: the admin service refuses every call); never one that is a device token."""
    if settings.admin_token_file is None:
        return None
    tokens = TokenSet.load(settings.admin_token_file)
    check_distinct(tokens, devices)
    return tokens
