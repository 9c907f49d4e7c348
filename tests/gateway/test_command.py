"""`kaito gateway`'s flags as the CLI parses them."""

from __future__ import annotations

import pytest

from kaito.cli import _parser, main


def test_flags_and_defaults() -> None:
    parser, run = _parser("gateway", {})
    args = parser.parse_args(["gateway", "--namespace", "ns", "--inferenceset", "chat"])
    assert run is not None and run.__name__ == "run_gateway"
    assert (args.port, args.max_queue, args.hold_timeout, args.kubeconfig) == (5000, 100, 600.0, None)


def test_the_set_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["gateway", "--namespace", "ns"])
    assert exit_.value.code == 2
    assert "--inferenceset" in capsys.readouterr().err


def test_bad_numbers_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gateway", "--namespace", "ns", "--inferenceset", "chat", "--hold-timeout", "0"]) == 2
    assert "--hold-timeout" in capsys.readouterr().err
