"""Spec problems as CI annotations: JSON, GitHub workflow commands, Azure Pipelines logging
commands. Pure: each returns the text to print on stdout, where both CI systems read commands.

- GitHub: ``::error file={name},line={line},col={col},title={title}::{message}``; in the
  message ``%``, CR and LF are escaped as ``%25``, ``%0D``, ``%0A``, in properties also ``:`` and
  ``,`` as ``%3A`` and ``%2C`` (docs.github.com/actions/reference/workflow-commands-for-github-actions;
  actions/toolkit ``packages/core/src/command.ts``, ``escapeData``/``escapeProperty``).
- Azure Pipelines: ``##vso[task.logissue type=error;sourcepath=;linenumber=;columnnumber=;code=]message``;
  ``%`` as ``%AZP25``, CR and LF as ``%0D`` and ``%0A``, in properties also ``;`` and ``]`` as
  ``%3B`` and ``%5D`` (learn.microsoft.com/azure/devops/pipelines/scripts/logging-commands;
  microsoft/azure-pipelines-task-lib ``node/taskcommand.ts``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Final

from reconciler.errors import Problem

PROBLEM_FORMATS: Final = ("text", "json", "github", "azure-devops")


def _github_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _github_property(text: str) -> str:
    return _github_data(text).replace(":", "%3A").replace(",", "%2C")


def _azure_data(text: str) -> str:
    return text.replace("%", "%AZP25").replace("\r", "%0D").replace("\n", "%0A")


def _azure_property(text: str) -> str:
    return _azure_data(text).replace("]", "%5D").replace(";", "%3B")


def _message(problem: Problem) -> str:
    # a warning's level is in the command: drop its "warning: " prefix from the text
    message = problem.message.removeprefix("warning: ")
    return f"{problem.path}: {message}" if problem.path else message


def github_commands(problems: Sequence[Problem], *, level: str = "error") -> str:
    """One ``::error`` (or ``::warning``) workflow command per problem (GitHub shows it on the
    pull request's line)."""
    lines = []
    for p in problems:
        props = [
            f"file={_github_property(p.file)}",
            f"line={p.line}",
            f"col={p.column}",
            f"title={_github_property(p.path or 'spec')}",
        ]
        lines.append(f"::{level} {','.join(props)}::{_github_data(_message(p))}")
    return "".join(line + "\n" for line in lines)


def azure_devops_commands(problems: Sequence[Problem], *, level: str = "error") -> str:
    """One ``task.logissue`` logging command per problem (shown on the pull request's line)."""
    lines = []
    for p in problems:
        props = [
            f"type={level}",
            f"sourcepath={_azure_property(p.file)}",
            f"linenumber={p.line}",
            f"columnnumber={p.column}",
        ]
        lines.append(f"##vso[task.logissue {';'.join(props)}]{_azure_data(_message(p))}")
    return "".join(line + "\n" for line in lines)


def _problem_json(p: Problem) -> dict[str, object]:
    return {
        "file": p.file,
        "line": p.line,
        "column": p.column,
        "path": p.path,
        "message": p.message,
    }


def problems_json(
    problems: Sequence[Problem], *, summary: str = "", warnings: Sequence[Problem] = ()
) -> str:
    """``{"valid", "count", "problems": [{file, line, column, path, message}], "warnings":
    [...same], "summary"}``."""
    document = {
        "valid": not problems,
        "count": len(problems),
        "problems": [_problem_json(p) for p in problems],
        "warnings": [_problem_json(p) for p in warnings],
        "summary": summary,
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def render_problems(
    problems: Sequence[Problem],
    fmt: str,
    *,
    summary: str = "",
    warnings: Sequence[Problem] = (),
    level: str = "error",
) -> str:
    """The problems in ``fmt`` (``PROBLEM_FORMATS``); text is ``file:line:column: path: message``.
    ``level`` (``error`` or ``warning``) is the annotation level; JSON lists ``warnings`` apart."""
    if fmt == "json":
        return problems_json(problems, summary=summary, warnings=warnings)
    if fmt == "github":
        return github_commands(problems, level=level)
    if fmt == "azure-devops":
        return azure_devops_commands(problems, level=level)
    if fmt == "text":
        return "".join(f"{p}\n" for p in problems)
    raise ValueError(f"unknown format {fmt!r}: choose one of {', '.join(PROBLEM_FORMATS)}")
