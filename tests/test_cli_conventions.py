"""Command-line conventions every subcommand keeps (parsing only: no model is loaded here)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT
from voxrelay.cli import build_parser, main


def voxrelay(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "voxrelay", *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


def parsers(parser: argparse.ArgumentParser | None = None) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every parser of the command line, the top one first, with its command path ("", "batch", "deploy add")."""
    parser = parser or build_parser()
    stack: list[tuple[str, argparse.ArgumentParser]] = [("", parser)]
    while stack:
        path, p = stack.pop(0)
        yield path, p
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    stack.append((f"{path} {name}".strip(), child))


def test_no_parser_takes_abbreviations() -> None:
    found = dict(parsers())
    assert {"transcribe", "batch", "listen", "eval", "serve", "deploy add"} <= set(found)
    assert [path for path, p in found.items() if p.allow_abbrev] == []


def test_a_prefix_of_a_flag_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    # --device is listen's and serve's; transcribe must not read it as --device-id.
    with pytest.raises(SystemExit) as exit_:
        main(["transcribe", "x.wav", "--device", "cuda"])
    assert exit_.value.code == 2
    assert "unrecognized arguments: --device cuda" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--max-str", "3"])
    assert exit_.value.code == 2


@pytest.mark.parametrize(
    ("argv", "verbose", "quiet"),
    [
        (["batch", "in", "-o", "out", "-q"], 0, True),
        (["-q", "batch", "in", "-o", "out"], 0, True),
        (["transcribe", "a.wav", "-vv"], 2, False),
        (["-v", "-v", "transcribe", "a.wav"], 2, False),
        (["-v", "serve", "--port", "0"], 1, False),
        (["serve", "--verbose"], 1, False),
        (["deploy", "status", "-q"], 0, True),
        (["eval", "m.jsonl", "-o", "out", "-v"], 1, False),
        (["transcribe", "a.wav"], 0, False),
    ],
)
def test_log_flags_work_before_and_after_the_subcommand(argv: list[str], verbose: int, quiet: bool) -> None:
    args = build_parser().parse_args(argv)
    assert (args.verbose, args.quiet) == (verbose, quiet)


def test_every_subcommand_takes_the_log_flags() -> None:
    missing = [
        path
        for path, p in parsers()
        if path and not {"-v", "--verbose", "-q", "--quiet"} <= set(p._option_string_actions)
    ]
    assert missing == []


def test_batch_does_not_offer_a_spool(tmp_path: Path) -> None:
    help_text = voxrelay("batch", "--help").stdout
    assert "--spool-dir" not in help_text and "--spool-max-mb" not in help_text
    run = voxrelay("batch", str(tmp_path), "-o", str(tmp_path / "out"), "--spool-dir", str(tmp_path / "s"))
    assert run.returncode == 2 and "unrecognized arguments: --spool-dir" in run.stderr
    assert "--spool-dir" in voxrelay("transcribe", "--help").stdout


def test_no_input_device_is_said_in_the_commands_own_words(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from voxrelay.edge.capture import mic
    from voxrelay.errors import VoxrelayError

    monkeypatch.setattr(mic, "list_input_devices", list)
    assert main(["devices"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("voxrelay devices: no audio input device") and err.count("\n") == 1
    # listen takes no file: it points at the command that reads one as live audio.
    with pytest.raises(VoxrelayError) as refused:
        mic._resolve_device([], None)
    assert "voxrelay transcribe --pace 1 FILE" in refused.value.message
    assert "WAV file instead" not in refused.value.message


def one_line(run: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in run.stderr and run.stderr.strip().count("\n") == 0, run.stderr
    return run.stderr.strip()


@pytest.mark.parametrize("command", [["transcribe", "samples/voxrelay-sample.wav"], ["serve", "--port", "0"]])
def test_an_unknown_model_is_a_usage_error(command: list[str]) -> None:
    run = voxrelay(*command, "--model", "nosuchmodel")
    assert run.returncode == 2
    line = one_line(run)
    assert line.startswith(f"voxrelay {command[0]}: unknown model 'nosuchmodel'") and "tiny.en" in line


@pytest.mark.parametrize("model", [[], ["--model", "base"]])
def test_a_language_that_is_not_a_code_is_said_so_once(model: list[str]) -> None:
    run = voxrelay("transcribe", "samples/voxrelay-sample.wav", *model, "--language", "xx")
    assert run.returncode == 2
    line = one_line(run)
    assert line.startswith("voxrelay transcribe: --language: 'xx' is not a language code")
    assert "English-only" not in line and line.count(" de,") == 1  # the list of codes, once


def test_the_server_refuses_a_language_that_is_not_a_code() -> None:
    from voxrelay.cloud.backends.base import ModelDescriptor
    from voxrelay.cloud.settings import ServerSettings
    from voxrelay.cloud.wire import decode_options
    from voxrelay.errors import InvalidArgument
    from voxrelay.protos import pb

    base = ModelDescriptor("base", "0123456789ab", "faster-whisper", True, "cpu/int8")
    with pytest.raises(InvalidArgument, match=r"options\.language: 'xx' is not a language code"):
        decode_options("options", pb.RecognitionOptions(language="xx"), ServerSettings(), base)
    assert decode_options("options", pb.RecognitionOptions(language="yue"), ServerSettings(), base).language == "yue"


def test_the_language_codes_are_whispers() -> None:
    tokenizer = pytest.importorskip("faster_whisper.tokenizer")
    from voxrelay.languages import LANGUAGE_CODES

    assert tuple(tokenizer._LANGUAGE_CODES) == LANGUAGE_CODES


# Whisper's names: --task, --temperature, --compute-type, --threads; -o/--output-dir the same everywhere.


@pytest.mark.parametrize(
    "argv",
    [["transcribe", "a.wav", "-o", "DIR"], ["batch", "in", "-o", "DIR"], ["eval", "m.jsonl", "-o", "DIR"]],
)
def test_o_is_the_output_folder_of_every_command_that_writes_files(argv: list[str]) -> None:
    assert build_parser().parse_args(argv).output_dir == "DIR"
    assert build_parser().parse_args([*argv[:-2], "--output-dir", "DIR"]).output_dir == "DIR"


def test_eval_writes_its_report_into_the_output_folder(tmp_path: Path) -> None:
    from voxrelay.quality.command import prepare

    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"audio": "a.wav", "text": "hello"}\n')
    args = build_parser().parse_args(["eval", str(manifest), "-o", str(tmp_path / "out")])
    prepare(args)
    assert args.report == str(tmp_path / "out" / "report.json")
    args = build_parser().parse_args(["eval", str(manifest), "--report", str(tmp_path / "r.json")])
    prepare(args)
    assert args.report == str(tmp_path / "r.json")
    run = voxrelay("eval", str(manifest), "-o", str(tmp_path / "r.json"))
    assert run.returncode == 2 and "--report" in one_line(run)


@pytest.mark.parametrize("command", ["transcribe", "batch", "listen", "eval"])
def test_whisper_option_names_parse(command: str) -> None:
    positional = {"transcribe": ["a.wav"], "batch": ["in", "-o", "out"], "listen": [], "eval": ["m", "-o", "out"]}
    options = ["--task", "translate", "--temperature", "0,0.2,0.4", "--compute-type", "float32", "--threads", "2"]
    args = build_parser().parse_args([command, *positional[command], *options])
    assert (args.task, args.temperature, args.compute_type) == ("translate", (0.0, 0.2, 0.4), "float32")
    assert args.threads == 2
    assert build_parser().parse_args([command, *positional[command], "--temperature", "0"]).temperature == (0.0,)


def test_serve_takes_temperatures_and_threads() -> None:
    args = build_parser().parse_args(["serve", "--temperature", "0", "--threads", "3"])
    assert (args.temperature, args.cpu_threads) == ((0.0,), 3)


@pytest.mark.parametrize("value", ["2", "0,x", "-0.1"])
def test_a_temperature_out_of_range_is_a_usage_error(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["transcribe", "a.wav", "--temperature", value])
    assert exit_.value.code == 2 and "--temperature" in capsys.readouterr().err


def test_the_embedded_recognizers_options_need_no_server() -> None:
    run = voxrelay("transcribe", "a.wav", "--server", "127.0.0.1:1", "--temperature", "0", "--threads", "1")
    assert run.returncode == 2
    assert one_line(run).startswith("voxrelay transcribe: --temperature, --threads: set the embedded recognizer")


@pytest.mark.parametrize(
    ("options", "said"),
    [(["--task", "translate"], "--task translate"), (["--language", "de"], "--language de")],
)
def test_translation_needs_a_multilingual_model(options: list[str], said: str) -> None:
    run = voxrelay("transcribe", "samples/voxrelay-sample.wav", *options)  # tiny.en, the default
    assert run.returncode == 2
    line = one_line(run)
    assert line.startswith(f"voxrelay transcribe: {said}: tiny.en is an English-only model") and "--model base" in line


def test_the_server_settings_temperatures_reach_the_decoder() -> None:
    from voxrelay.cloud.backends.base import ModelDescriptor
    from voxrelay.cloud.settings import ServerSettings
    from voxrelay.cloud.wire import decode_options
    from voxrelay.errors import InvalidArgument
    from voxrelay.protos import pb

    model = ModelDescriptor("tiny.en", "0123456789ab", "faster-whisper", False, "cpu/int8")
    given = decode_options("options", pb.RecognitionOptions(), ServerSettings(temperature=(0.0, 0.5)), model)
    assert given.temperature == (0.0, 0.5)
    assert decode_options("options", pb.RecognitionOptions(), ServerSettings(), model).temperature is None
    assert build_parser().parse_args(["serve"]).temperature is None
    with pytest.raises(InvalidArgument, match=r"temperature: 1\.5 is out of range"):
        ServerSettings(temperature=(0.0, 1.5))


def test_translate_goes_on_the_wire() -> None:
    from voxrelay.edge.link.messages import session_config
    from voxrelay.protos import pb

    common = dict(device_id="d", session_id="s", language=None, model=None, beam_size=0, word_timestamps=False)
    translate = session_config(**common, initial_prompt=None, hotwords=None, task="translate")  # type: ignore[arg-type]
    assert translate.config.options.task == pb.TRANSLATE
    assert session_config(**common, initial_prompt=None, hotwords=None).config.options.task == pb.TASK_UNSPECIFIED  # type: ignore[arg-type]
