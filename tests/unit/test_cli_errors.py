"""Errors the user can act on print one line, `vict <cmd>: error: <message>`, and a documented exit status; the
traceback only with `vict --debug` or VICT_DEBUG=1; Ctrl-C exits 130; a bug keeps its traceback."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import pytest

from vict.cli import error_exit_code, error_message, main

ROOT = Path(__file__).resolve().parents[2]
LORA = ROOT / "configs" / "world" / "vict_lora.yaml"


@pytest.fixture
def failing(monkeypatch: pytest.MonkeyPatch):
    """``vict methods`` made to raise the given exception (the wrapper is the same for every subcommand)."""
    import vict.methods.cli as methods_cli

    monkeypatch.delenv("VICT_DEBUG", raising=False)

    def arm(err: BaseException) -> None:
        def run(args: argparse.Namespace) -> int:
            raise err

        monkeypatch.setattr(methods_cli, "run", run)

    return arm


def _only_error_line(err: str, command: str = "methods") -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith(f"vict {command}: error: "), err
    return lines[0].removeprefix(f"vict {command}: error: ")


@pytest.mark.parametrize(
    ("err", "code", "message"),
    [
        (
            PermissionError(13, "Permission denied", "/runs/x/.vict-run.lock"),
            2,
            "Permission denied: /runs/x/.vict-run.lock",
        ),
        (FileNotFoundError(2, "No such file or directory", "world/captions.json"), 2, "No such file or directory"),
        (ValueError("data.world=w: no images; run `vict data world --out w`"), 2, "no images; run `vict data world"),
        (KeyError("unknown method 'lorra'; did you mean 'lora'?"), 2, "unknown method 'lorra'; did you mean 'lora'?"),
        (KeyError("model"), 2, "missing key 'model'"),
        (FloatingPointError("loss is nan at step 3; lower train.lr"), 1, "loss is nan at step 3; lower train.lr"),
        (OSError(28, "No space left on device", "/runs/x/final"), 1, "No space left on device: /runs/x/final"),
    ],
)
def test_expected_errors_print_one_line_and_their_exit_status(failing, capsys, err, code, message):
    failing(err)
    assert main(["methods"]) == code
    assert message in _only_error_line(capsys.readouterr().err)


def test_the_traceback_is_shown_with_debug_or_vict_debug(failing, capsys, monkeypatch):
    failing(PermissionError(13, "Permission denied", "/runs/x"))
    assert main(["--debug", "methods"]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "PermissionError" in err
    assert err.rstrip().splitlines()[-1] == "vict methods: error: Permission denied: /runs/x"
    monkeypatch.setenv("VICT_DEBUG", "1")
    assert main(["methods"]) == 2
    assert "Traceback (most recent call last)" in capsys.readouterr().err
    monkeypatch.setenv("VICT_DEBUG", "0")
    assert main(["methods"]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_ctrl_c_exits_130_with_one_line(failing, capsys):
    failing(KeyboardInterrupt())
    assert main(["methods"]) == 130
    assert capsys.readouterr().err.strip() == "vict methods: interrupted"


def test_a_bug_keeps_its_traceback(failing):
    failing(TypeError("unsupported operand"))
    with pytest.raises(TypeError):
        main(["methods"])
    failing(RuntimeError("CUDA error: device-side assert"))  # raised outside vict: a library's failure, kept whole
    with pytest.raises(RuntimeError):
        main(["methods"])


def test_a_runtime_error_raised_by_vict_is_a_failed_run():
    import vict.cli

    inside_vict = str(Path(vict.cli.__file__).parent / "training" / "somewhere.py")
    with pytest.raises(RuntimeError) as err:
        exec(compile("raise RuntimeError('zoo checksum mismatch')", inside_vict, "exec"))
    assert error_exit_code(err.value) == 1
    with pytest.raises(RuntimeError) as err:
        raise RuntimeError("raised by a library, not vict")
    assert error_exit_code(err.value) is None


def test_busy_and_non_empty_output_folders_are_usage_errors():
    from vict.training.run_lock import PreviousRunError, RunLockedError

    assert error_exit_code(RunLockedError(Path("runs/x"), None, "train.output_dir")) == 2
    assert error_exit_code(PreviousRunError("runs/x already holds a run")) == 2
    assert error_message(PreviousRunError("runs/x already holds a run")) == "runs/x already holds a run"


def test_a_dataloader_workers_error_is_shown_without_the_workers_traceback():
    err = ValueError(
        "Caught ValueError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
        '  File "/x/worker.py", line 1, in _worker_loop\n    data = fetcher.fetch(index)\n'
        "ValueError: images/3.png: not an image (truncated file); re-download it"
    )
    assert error_message(err) == (
        "images/3.png: not an image (truncated file); re-download it (caught valueerror in dataloader worker process 0)"
    )


def test_subcommands_own_error_handling_is_unchanged(capsys):
    assert main(["train", str(LORA), "train.max_stepz=3"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "did you mean 'train.max_steps'?" in err


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_an_unwritable_output_folder_is_one_line(tmp_path: Path, capsys):
    if os.geteuid() == 0:
        pytest.skip("running as root: file permissions are not enforced (the monkeypatched case covers the output)")
    parent = tmp_path / "locked"
    parent.mkdir()
    parent.chmod(0o500)
    try:
        code = main(["train", str(LORA), "model.builder=tiny", f"train.output_dir={parent / 'run'}"])
    finally:
        parent.chmod(0o700)
    assert code == 2
    message = _only_error_line(capsys.readouterr().err, "train")
    assert f"cannot write to train.output_dir={parent / 'run'}" in message and "permission denied" in message


# ------------------------------------------------------------------- the real trainer's errors, end to end
TINY = [  # the tiny random model (tests/integration/tiny_world.py), short and quiet
    "model.builder=tiny",
    "method.target_modules=[q_proj,v_proj,lm_head]",
    "data.max_length=96",
    "train.cache_vision_features=false",
    "train.num_threads=1",
    "train.warmup_steps=1",
    "train.val_batches=0",
    "train.sample_count=0",
    "train.save_every=0",
    "train.eval_every=0",
    "train.log_every=1",
]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vict.data.world import generate_world

    out = tmp_path_factory.mktemp("world")
    generate_world(out, images=40, seed=0)
    return out


def _last_line(err: str) -> str:
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if "vict train: error: " in line]
    assert len(errors) == 1, err
    return errors[0].split("vict train: error: ", 1)[1]


@pytest.mark.integration
def test_a_data_error_of_the_trainer_is_one_line(world: Path, tmp_path: Path, capsys, monkeypatch):
    import shutil

    monkeypatch.delenv("VICT_DEBUG", raising=False)
    broken = tmp_path / "world"
    shutil.copytree(world, broken)
    captions = broken / "annotations" / "captions_train.json"
    captions.write_text(captions.read_text()[:200])  # truncated download
    argv = ["train", str(LORA), *TINY, f"data.world={broken}", f"train.output_dir={tmp_path / 'run'}", "--quiet"]
    assert main(argv) == 2
    message = _last_line(capsys.readouterr().err)
    assert f"{captions}:1:" in message and "malformed JSON" in message and "regenerate" in message
    assert not (tmp_path / "run").exists()  # refused before anything was written
    assert main(["--debug", *argv]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "MalformedJSONError" in err


@pytest.mark.integration
def test_a_non_finite_loss_is_one_line_and_a_failed_run(world: Path, tmp_path: Path, capsys, monkeypatch):
    monkeypatch.delenv("VICT_DEBUG", raising=False)
    argv = ["train", str(LORA), *TINY, f"data.world={world}", "train.max_steps=8", "--quiet"]
    argv += ["train.lr=1e30", "train.connector_lr=1e30", f"train.output_dir={tmp_path / 'run'}"]
    assert main(argv) == 1
    message = _last_line(capsys.readouterr().err)
    assert message.startswith("loss is ") and "lower train.lr" in message
    monkeypatch.setenv("VICT_DEBUG", "1")
    assert main([*argv[:-1], f"train.output_dir={tmp_path / 'again'}"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "FloatingPointError" in err
