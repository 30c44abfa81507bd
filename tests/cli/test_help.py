"""``relbench --help`` and ``relbench COMMAND --help`` print usage and exit 0."""

import pytest

from relbench.cli.main import COMMANDS, main


def test_help_lists_every_command(capsys):
    main(["relbench", "--help"])  # returns: exit status 0
    out = capsys.readouterr().out
    assert out.startswith("usage:")
    for command in COMMANDS:
        assert f"relbench {command} " in out, command


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_command_help_prints_its_usage(command, capsys):
    main(["relbench", command, "--help"])
    assert f"  relbench {command} " in capsys.readouterr().out


def test_launch_passes_help_after_the_separator_to_train(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["relbench", "launch", "--processes", "0", "--", "--help"])
    assert exit_.value.code == 2  # launch's own options were parsed, not its help
