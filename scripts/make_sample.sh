#!/bin/sh
# Makes samples/voxrelay-sample.wav (16 kHz mono 16-bit PCM, two sentences between 2.5 s silences)
# with espeak-ng and sox:   apt-get install espeak-ng sox && sh scripts/make_sample.sh
set -eu
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
espeak-ng -v en-us -s 130 -g 2 -w "$tmp/a.wav" "Hello, and welcome. This is a short test of speech recognition."
espeak-ng -v en-us -s 130 -g 2 -w "$tmp/b.wav" "The quick brown fox jumps over the lazy dog."
sox -n -r 22050 -c 1 -b 16 "$tmp/gap.wav" trim 0 2.5
sox "$tmp/gap.wav" "$tmp/a.wav" "$tmp/gap.wav" "$tmp/b.wav" "$tmp/gap.wav" \
    -r 16000 -c 1 -b 16 -e signed-integer samples/voxrelay-sample.wav
