"""`beatedit <cmd> --help` (issue 20 item 5): every argument of every subcommand has help, and each option's
default shows exactly once; the packaged defaults are the repo's params.yaml."""

from __future__ import annotations

import argparse
import re

import pytest

from app.cli import build_parser
from beatedit.config import Config, load_config
from tests.conftest import REPO


def _parsers(parser: argparse.ArgumentParser, name: str = "beatedit") -> list[tuple[str, argparse.ArgumentParser]]:
    out = [(name, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                out += _parsers(sub, f"{name} {sub_name}")
    return out


PARSERS = _parsers(build_parser())


def test_every_subcommand_is_walked():
    names = {n for n, _ in PARSERS}
    assert {"beatedit run", "beatedit edit", "beatedit evaluate", "beatedit promote", "beatedit feedback serve",
            "beatedit feedback export", "beatedit feedback demo"} <= names


@pytest.mark.parametrize("name,parser", PARSERS, ids=[n for n, _ in PARSERS])
def test_every_argument_has_help_and_its_default_once(name, parser):
    formatter = parser._get_formatter()
    problems = []
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
            continue
        label = "/".join(action.option_strings) or action.dest
        if not action.help:
            problems.append(f"{label}: no help")
            continue
        text = formatter._expand_help(action)
        mentions = len(re.findall(r"\(default", text, re.I))
        meaningful = (action.option_strings and not action.required and action.default not in (None, False, [])
                      and action.default is not argparse.SUPPRESS)
        if mentions > 1:
            problems.append(f"{label}: the default is stated {mentions} times: {text!r}")
        if meaningful and mentions == 0:
            problems.append(f"{label}: default {action.default!r} not shown: {text!r}")
        if "(default: None)" in text:
            problems.append(f"{label}: shows a meaningless default: {text!r}")
    assert not problems, f"{name}: " + "; ".join(problems)


def test_the_packaged_defaults_are_the_repo_params_yaml():
    """`edit` / `evaluate` outside a checkout use Config() (beatedit/config.py's documented defaults): they must be
    exactly the repo's params.yaml, so an edit from any folder behaves as one in the repo."""
    assert load_config(REPO / "params.yaml") == Config()
