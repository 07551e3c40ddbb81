"""Safe model rollout: named deployments served side by side, a sticky router (shadow, canary,
blue-green), automatic analysis with rollback, the Admin gRPC service and its audit log.

``config`` (the deployments file), ``state`` (the rollout as a value), ``router`` (hashing),
``analysis`` (the checks), ``controller`` (the deployments and every change), ``shadow``,
``engines`` (loading, CPU priority), ``admin`` and ``status`` (the Admin service), ``audit``, ``metrics``.
"""
