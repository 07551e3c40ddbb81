#!/bin/sh
# Makes samples/voxrelay-sample.wav (16 kHz mono 16-bit PCM): two sentences spoken by espeak-ng between 2.5 s
# pauses, over quiet pink noise (room tone, about -50 dBFS).
#   apt-get install espeak-ng sox && sh scripts/make_sample.sh
set -eu
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
espeak-ng -v en-us -s 130 -g 2 -w "$tmp/a.wav" "Hello, and welcome. This is a short test of speech recognition."
espeak-ng -v en-us -s 130 -g 2 -w "$tmp/b.wav" "The quick brown fox jumps over the lazy dog."
sox -n -r 22050 -c 1 -b 16 "$tmp/gap.wav" trim 0 2.5
sox "$tmp/gap.wav" "$tmp/a.wav" "$tmp/gap.wav" "$tmp/b.wav" "$tmp/gap.wav" \
    -r 16000 -c 1 -b 16 -e signed-integer "$tmp/speech.wav"
sox -R -n -r 16000 -c 1 -b 16 "$tmp/noise.wav" synth "$(soxi -D "$tmp/speech.wav")" pinknoise vol 0.005
sox -R -m "$tmp/speech.wav" "$tmp/noise.wav" -b 16 samples/voxrelay-sample.wav
