#!/bin/sh
# Install the voxrelay edge agent as a systemd service on a Raspberry Pi (Raspberry Pi OS / Debian).
#   sudo sh deploy/systemd/install-edge.sh recognizer.example:50051 [TOKEN_FILE]
# Run from a clone of the repository. Puts a virtual environment in /opt/voxrelay, a system user
# `voxrelay` (in the audio group), settings in /etc/voxrelay/edge.env, the spool in /var/lib/voxrelay.
set -eu

SERVER=${1:?usage: install-edge.sh HOST:PORT [TOKEN_FILE]}
TOKEN_FILE=${2:-}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)

[ "$(id -u)" -eq 0 ] || { echo "install-edge.sh: run as root (sudo)" >&2; exit 1; }

apt-get install -y --no-install-recommends python3-venv libportaudio2
id voxrelay >/dev/null 2>&1 || useradd --system --home-dir /var/lib/voxrelay --shell /usr/sbin/nologin \
    --groups audio voxrelay

python3 -m venv /opt/voxrelay
# silero needs onnxruntime, which has no wheels for 32-bit ARM: there the agent uses webrtc (--vad auto).
EXTRAS=edge,mic
case "$(uname -m)" in aarch64|x86_64) EXTRAS=edge,mic,silero ;; esac
/opt/voxrelay/bin/pip install --quiet "$REPO[$EXTRAS]"

install -d -m 0750 -o root -g voxrelay /etc/voxrelay
ARGS="--tls"
if [ -n "$TOKEN_FILE" ]; then
    install -m 0640 -o root -g voxrelay "$TOKEN_FILE" /etc/voxrelay/token
    ARGS="$ARGS --auth-token-file /etc/voxrelay/token"
fi
if [ ! -e /etc/voxrelay/edge.env ]; then
    cat > /etc/voxrelay/edge.env <<ENV
# voxrelay edge settings (systemctl restart voxrelay-edge after a change).
# Several recognizers: A:PORT,B:PORT, or dns:///NAME:PORT. Add --tls-ca FILE for a private CA,
# --device NAME for a microphone other than the default, --insecure for plaintext on a trusted LAN.
VOXRELAY_SERVER=$SERVER
VOXRELAY_ARGS=$ARGS
ENV
fi
install -m 0644 "$HERE/voxrelay-edge.service" /etc/systemd/system/voxrelay-edge.service
systemctl daemon-reload
systemctl enable --now voxrelay-edge.service
echo "voxrelay-edge installed: journalctl -u voxrelay-edge -f"
