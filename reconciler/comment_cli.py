"""The shell behind ``reconciler comment``: reads the saved plan, the pipeline's variables, the
event payload and the clock, then posts or edits the comment through the provider."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reconciler import comment
from reconciler.errors import AuthError, ConfigError


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("wif-reconciler")
    except PackageNotFoundError:
        return "0+unknown"


def _read_plan(path: str) -> dict[str, Any]:
    from reconciler.render.document import loads

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the saved plan: {exc.strerror}") from None
    try:
        return loads(text)
    except Exception as exc:  # PlanError: name the file
        raise ConfigError(f"{path}: {exc}") from None


def _event(env: Mapping[str, str]) -> dict[str, Any]:
    path = env.get("GITHUB_EVENT_PATH", "").strip()
    if not path:
        return {}
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"GITHUB_EVENT_PATH {path}: cannot read it: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"GITHUB_EVENT_PATH {path}:{exc.lineno}: not JSON: {exc.msg}") from None
    return data if isinstance(data, dict) else {}


def _verify(args: argparse.Namespace) -> str | bool:
    """The simulator's CA when --target (or $RECONCILER_TARGET) names one, else the system's
    (requests also honours $REQUESTS_CA_BUNDLE)."""
    from reconciler.providers.target import resolve_target

    target = resolve_target(getattr(args, "target", None), cloud=getattr(args, "cloud", None))
    if target is not None and target.ca_bundle:
        return target.ca_bundle
    return os.environ.get("REQUESTS_CA_BUNDLE") or True


def _devops_authorization(
    args: argparse.Namespace, env: Mapping[str, str], collection_uri: str
) -> str:
    token = env.get("SYSTEM_ACCESSTOKEN", "").strip()
    if token:
        # the job's own token, issued by that collection (Azure DevOps Server hosts included)
        return f"Bearer {token}"
    # no job token mapped: an Entra token for Azure DevOps from the tool's own credential, only
    # for one of its target's Azure DevOps hosts
    from reconciler.model import DEVOPS_RESOURCE_ID
    from reconciler.providers.auth import describe_credential_error, make_credential
    from reconciler.providers.target import (
        Service,
        check_token_destination,
        effective_auth,
        resolve_target,
    )

    target = resolve_target(
        getattr(args, "target", None),
        cloud=getattr(args, "cloud", None),
        auth=args.auth,
        warn=lambda message: print(f"warning: {message}", file=sys.stderr),
    )
    check_token_destination(target, Service.DEVOPS, collection_uri)
    credential = make_credential(target, effective_auth(target, args.auth))
    try:
        return f"Bearer {credential.get_token(f'{DEVOPS_RESOURCE_ID}/.default').token}"
    except Exception as exc:
        raise AuthError(
            "no SYSTEM_ACCESSTOKEN (map it: env: SYSTEM_ACCESSTOKEN: $(System.AccessToken)) and "
            f"no Entra token for Azure DevOps: {describe_credential_error(exc)}",
            status=401,
        ) from None


def cmd_comment(args: argparse.Namespace) -> int:
    env = dict(os.environ)
    document = _read_plan(args.file)
    provider = args.provider or comment.detect_provider(env)
    event = _event(env) if provider == comment.GITHUB else {}
    clients: Any
    if provider == comment.GITHUB:
        pr_gh = comment.github_pull_request(env, event)
        token = env.get("GITHUB_TOKEN", "").strip()
        if not token:
            raise ConfigError(
                "GITHUB_TOKEN is not set: add env: GITHUB_TOKEN: ${{ github.token }} to the step "
                "and permissions: pull-requests: write to the job"
            )
        from reconciler.providers.pullrequests import GitHubComments

        clients = GitHubComments(pr_gh, token, verify=_verify(args))
        where = f"{pr_gh.repository}#{pr_gh.number}"
    else:
        pr_ado = comment.azure_devops_pull_request(env)
        from reconciler.providers.pullrequests import AzureDevOpsComments

        clients = AzureDevOpsComments(
            pr_ado, _devops_authorization(args, env, pr_ado.collection_uri), verify=_verify(args)
        )
        where = f"pull request {pr_ado.pull_request_id}"
    root = env.get("BUILD_SOURCESDIRECTORY") or env.get("GITHUB_WORKSPACE") or os.getcwd()
    key = comment.comment_key(
        str(document.get("owner", "")), [str(p) for p in document.get("spec_paths") or []], root
    )
    run = comment.run_url(provider, env)
    footer = comment.footer(
        commit=comment.commit_of(provider, env, event),
        command=comment.command_of(document),
        when=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        version=_version(),
        run=run,
    )
    body = comment.compose(
        document, key=key, limit=comment.LIMITS[provider], footer_line=footer, run=run
    )
    try:
        outcome, posted = comment.upsert(clients, key, body)
    finally:
        clients.close()
    link = f" {posted.url}" if posted.url else ""
    if outcome == "unchanged":
        print(f"the plan comment on {where} (comment {posted.id}) is up to date{link}")
    else:
        print(f"{outcome} the plan comment on {where} (comment {posted.id}){link}")
    return 0
