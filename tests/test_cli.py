"""The openmm-bg command: bad input ends in one clear line and exit status 2, never a traceback."""

import os
import re
import subprocess
import sys

import pytest

from openmm_bg.cli import SUBCOMMANDS, main, parse_args


@pytest.mark.parametrize(
    "argv, message",
    [
        (["simulate", "no-such-system", "-o", "x.dcd"], "no-such-system"),
        (["explore", "no-such-system", "-o", "g.pt"], "no-such-system"),
        (["explore", "-o", "g.pt"], "give the system to explore"),
        (["explore", "double-well", "--system", "ala2-vacuum", "-o", "g.pt"], "differ; give the registered system once"),
        (["toy", "--ml-iterations", "0"], "ml-iterations must be a positive integer"),
    ],
)
def test_bad_input_gives_a_clear_error_and_exit_2(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OPENMM_BG_DEBUG", raising=False)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert err.startswith(f"openmm-bg {argv[0]}: error:")


def test_every_subcommand_has_help():
    for name in SUBCOMMANDS:
        with pytest.raises(SystemExit) as exit_info:
            parse_args([name, "--help"])
        assert exit_info.value.code == 0


def test_help_shows_defaults_once(capsys):
    for name in SUBCOMMANDS:
        with pytest.raises(SystemExit):
            parse_args([name, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "(default: None)" not in text and "(default: False)" not in text
        assert not re.search(r"default[^()]*\) \(default:", text)  # never a second default after one the help states
    with pytest.raises(SystemExit):
        parse_args(["train", "--help"])
    assert "use every n-th frame (default: 1)" in " ".join(capsys.readouterr().out.split())


def test_debug_switch_reraises(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENMM_BG_DEBUG", "1")
    with pytest.raises(ValueError, match="no-such-system"):
        main(["explore", "no-such-system", "-o", "g.pt"])


@pytest.mark.timeout(300)
def test_real_process(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "OPENMM_BG_DEBUG"}
    done = subprocess.run([sys.executable, "-m", "openmm_bg.cli", "simulate", "no-such-system", "-o", str(tmp_path / "x.dcd")], capture_output=True, text=True, env=env, timeout=240)
    assert done.returncode == 2
    assert "no-such-system" in done.stderr and "Traceback" not in done.stderr


def test_the_toy_commands_written_out_defaults_match_the_recipe():
    from openmm_bg.commands.toy import DEFAULTS, TOY_NAMES
    from openmm_bg.recipes.toy import TOY_SYSTEMS, ToyDemoSettings

    assert TOY_NAMES == tuple(sorted(TOY_SYSTEMS))
    assert DEFAULTS == {name: getattr(ToyDemoSettings(), name) for name in DEFAULTS}


@pytest.mark.parametrize("argv", [["--help"], ["sample", "--help"], ["free-energy", "--help"], ["train", "--help"], ["toy", "--help"]])
def test_help_imports_no_heavy_module(argv):
    """--help must start fast: no torch, openmmtools or pymbar (run in a fresh interpreter)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from openmm_bg import cli\n"
        "try:\n"
        f"    cli.main({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted(m for m in ('torch', 'openmmtools', 'pymbar') if m in sys.modules))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == "[]", run.stdout[-500:]
