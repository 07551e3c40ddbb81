"""voxrelay: edge/cloud speech transcription over gRPC."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("voxrelay")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"

SAMPLE_RATE = 16000
"""The pipeline's internal audio rate: 16 kHz mono."""
