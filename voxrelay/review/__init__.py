"""Humans in the loop: the review queue (SQLite), its web page served by the recognizer, and
``voxrelay review``. Segments a deployment's automation level puts up for review wait here with their
audio; a person accepts or corrects the text, and the corrections become the live WER and an
evaluation manifest."""
