# The edge agent (voxrelay listen) for a Raspberry Pi or any Linux box with a microphone: the `edge`,
# `mic` and `silero` extras only (no torch, no CTranslate2). Builds for arm64 as for amd64:
#   docker buildx build --platform linux/arm64,linux/amd64 -f deploy/docker/edge.Dockerfile -t voxrelay-edge .
# Run with the sound device and a persistent spool:
#   docker run --device /dev/snd --group-add audio -v voxrelay-spool:/var/lib/voxrelay/spool \
#     voxrelay-edge --server recognizer.example:50051 --tls --auth-token-file /run/secrets/voxrelay-token
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN apt-get update \
    && apt-get install -y --no-install-recommends libportaudio2 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /build
COPY pyproject.toml README.md ./
COPY voxrelay ./voxrelay
RUN pip install --no-compile '.[edge,mic,silero]' \
    && rm -rf /build \
    && useradd --system --uid 10002 --groups audio --no-create-home --shell /usr/sbin/nologin voxrelay \
    && mkdir -p /var/lib/voxrelay/spool \
    && chown -R voxrelay /var/lib/voxrelay

WORKDIR /var/lib/voxrelay
USER 10002
VOLUME ["/var/lib/voxrelay/spool"]

ENTRYPOINT ["voxrelay", "listen"]
CMD ["--server", "dns:///recognizer:50051", "--tls", "--spool-dir", "/var/lib/voxrelay/spool"]
