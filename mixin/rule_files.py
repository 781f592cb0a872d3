"""Prometheus rule files as data, and their YAML text with the comments kept.

The text is generated rather than dumped in one piece so that the comments that
explain the rules (a file header, a comment before a rule) survive: each rule
is dumped on its own with PyYAML's safe dumper, multi-line expressions in
literal block style and descriptions folded, and comments are written as
``#`` lines around them. ``yaml.safe_load`` of the text equals ``RuleFile.data()``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

# Descriptions are folded at this width (plus the rule's indentation); nothing
# else is wrapped.
TEXT_WIDTH = 80
UNWRAPPED = 10_000
RULE_INDENT = " " * 6  # under "groups: - name: ... rules:"


@dataclass(frozen=True)
class Rule:
    """One recording or alerting rule, and the comment written above it."""

    body: dict[str, Any]
    comment: str = ""

    @property
    def name(self) -> str:
        """The recorded series or the alert's name."""
        return str(self.body.get("record") or self.body["alert"])


def expression(text: str) -> str:
    """A rule's ``expr``: an expression over several lines ends with a newline, as a
    YAML literal block (``|``) reads it, so that the data and its YAML text agree."""
    return text + "\n" if "\n" in text and not text.endswith("\n") else text


def record(name: str, expr: str, comment: str = "") -> Rule:
    """A recording rule."""
    return Rule({"record": name, "expr": expression(expr)}, comment)


@dataclass(frozen=True)
class RuleGroup:
    """A rule group: its rules are evaluated in order, at the same instant."""

    name: str
    rules: list[Rule] = field(default_factory=list)


@dataclass(frozen=True)
class RuleFile:
    """A Prometheus rule file: a header comment and its groups."""

    name: str
    header: str
    groups: list[RuleGroup]
    # A blank line between every two rules (alerts, each several lines long),
    # rather than only before a commented rule.
    spaced: bool = False

    def data(self) -> dict[str, Any]:
        """The file's content as Prometheus reads it."""
        return {"groups": [{"name": group.name, "rules": [rule.body for rule in group.rules]}
                           for group in self.groups]}

    def render(self) -> str:
        """The file's YAML text, with its comments."""
        lines = [*comment_lines(self.header), "groups:"]
        for group in self.groups:
            lines += [f"  - name: {group.name}", "    rules:"]
            for index, rule in enumerate(group.rules):
                if index and (self.spaced or rule.comment):
                    lines.append("")
                lines += [RULE_INDENT + line for line in comment_lines(rule.comment)]
                lines += [RULE_INDENT + line if line else line
                          for line in dump_rule(rule.body).splitlines()]
        return "\n".join(lines) + "\n"


def comment_lines(text: str) -> list[str]:
    """*text* as YAML comment lines; an empty line of it as a bare ``#``."""
    return [f"# {line}" if line else "#" for line in text.splitlines()]


class _Prose(str):
    """A description: folded (``>-``) across lines rather than one long line."""


class _RuleDumper(yaml.SafeDumper):
    """The safe dumper, with literal blocks for multi-line text and folded prose.

    Only prose is folded at TEXT_WIDTH: PyYAML would also break a long plain
    scalar (an expression, a summary) across lines, which reads as the same value
    but no longer as one line of PromQL or one sentence.
    """

    def write_folded(self, text: str) -> None:
        self.best_width = TEXT_WIDTH
        try:
            super().write_folded(text)
        finally:
            self.best_width = UNWRAPPED


def _represent_text(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    if "\n" in text:
        style: str | None = "|"
    elif isinstance(text, _Prose):
        style = ">"
    else:
        style = None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_RuleDumper.add_representer(str, _represent_text)
_RuleDumper.add_representer(_Prose, _represent_text)


def dump_rule(body: dict[str, Any]) -> str:
    """One rule as a YAML list item, keys in the order Prometheus' docs show them."""
    annotations = body.get("annotations")
    if annotations and "description" in annotations:
        body = {**body, "annotations": {**annotations,
                                        "description": _Prose(annotations["description"])}}
    text = yaml.dump([body], Dumper=_RuleDumper, sort_keys=False, width=UNWRAPPED,
                     allow_unicode=True, default_flow_style=False)
    if yaml.safe_load(text) != [body]:  # a dumper quirk would change what Prometheus reads
        raise ValueError(f"the YAML of rule {body.get('record') or body.get('alert')} "
                         "does not read back as the rule")
    return text
