"""The cloud half: the recognizer service, its backends, routing and metrics."""
