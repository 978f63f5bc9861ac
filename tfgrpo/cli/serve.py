"""`tfgrpo serve`: run the OpenAI-compatible proxy that injects a learned library's prior."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from tfgrpo.cli import options as o
from tfgrpo.cli.common import console, guard, validated
from tfgrpo.config import ModelConfig
from tfgrpo.errors import ConfigError
from tfgrpo.serve.config import API_KEY_ENV, ProxyConfig, check_bind
from tfgrpo.serve.keys import read_key_file

UPSTREAM_KEY_ENV = "TFGRPO_UPSTREAM_API_KEY"


def build_config(**kw) -> ProxyConfig:
    return validated(ProxyConfig, flag_style=True, **kw)


def _warn(message: str) -> None:
    console.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True, markup=True)


def resolve_key(ctx: typer.Context, param: str, value: str | None, key_file: Path | None, *, flag: str,
                file_flag: str, env: str) -> str | None:
    """The key from `file_flag` (over the environment variable), else from `flag` or `env`. Both flags on
    the command line are refused; a key typed on the command line gets a warning (`ps` shows it)."""
    source = ctx.get_parameter_source(param)  # typer's own click: compare the enum member by name
    on_command_line = getattr(source, "name", None) == "COMMANDLINE"
    if key_file is not None:
        if on_command_line:
            raise ConfigError(f"pass either {flag} or {file_flag}, not both")
        return read_key_file(key_file, file_flag, _warn)
    if value and on_command_line:
        _warn(f"{flag} on the command line can be read by every user of this machine (`ps`); "
              f"use {file_flag} PATH or the environment variable {env} instead")
    return value or None


def _banner(rt) -> str:
    cfg = rt.cfg
    if cfg.library is None:
        lib = "no prior by default"
    else:
        from tfgrpo.prior import Prior

        p = Prior.from_store(rt.store, cfg.library, cfg.version, mode=cfg.mode, k=cfg.k, token_cap=cfg.token_cap,
                             placement=cfg.placement)
        count = len(rt.store.experiences(cfg.library, p.version))
        lib = f"library {cfg.library} v{p.version} ({count} experiences, mode {p.mode}"
        lib += f", k {p.k}" if p.mode == "topk" else ""
        lib += f", {p.n_examples} worked examples per call, cap {p.token_cap} tokens)"
    auth = "Bearer key required" if cfg.api_key else "no key (loopback only)"
    return (f"tfgrpo proxy on [bold]{rt.base_url}[/] -> {rt.model_cfg.model}; {lib}; {auth}. "
            "Point any OpenAI client at that base URL. Ctrl-C stops.")


@guard
def cmd(
    ctx: typer.Context,
    library: str = typer.Option(..., "--library", "-l", help="Library to inject by default, or `none`."),
    version: Optional[int] = typer.Option(None, "--version", min=0, max=o.MAX_COUNT, help="Library version (default: latest)."),
    mode: Optional[str] = typer.Option(None, "--mode", help="all: every live lesson up to the cap; topk: the k "
                                                            "nearest to the last user message (default: as trained)."),
    k: Optional[int] = typer.Option(None, "--k", min=1, max=256, help="Lessons per call in topk mode (default: as "
                                                                      "trained)."),
    token_cap: Optional[int] = typer.Option(None, "--token-cap", min=1, max=o.MAX_COUNT, help="Max tokens the "
                                            "experience block adds (default: as trained)."),
    placement: Optional[str] = typer.Option(None, "--placement", help="system (cache-friendly) or user "
                                                                      "(default: as trained)."),
    model: str = typer.Option("local", "--model", "-m", help="Upstream: local | local:qwen0.5b | local:smollm2 "
                                                             "| a litellm name (openai/gpt-4.1-mini ...)."),
    api_base: Optional[str] = typer.Option(None, "--api-base", help="Upstream OpenAI-compatible base URL."),
    upstream_key: Optional[str] = typer.Option(None, "--upstream-api-key", envvar=UPSTREAM_KEY_ENV, show_envvar=True,
                                               help="Key for the upstream (default: the provider's env var). "
                                                    "Prefer the env var or --upstream-api-key-file: `ps` shows "
                                                    "command-line arguments to every user."),
    upstream_key_file: Optional[Path] = typer.Option(None, "--upstream-api-key-file", help="Read the upstream's "
                                                     "key from this file (its first line; keep it chmod 600)."),
    gguf: Optional[str] = typer.Option(None, "--gguf", help="Serve this GGUF with the embedded server."),
    host: str = typer.Option("127.0.0.1", "--host", help="Bind address (non-loopback needs a key: "
                                                         "--api-key-file or TFGRPO_API_KEY)."),
    port: int = typer.Option(8400, "--port", min=0, max=65535),
    api_key: Optional[str] = typer.Option(None, "--api-key", envvar=API_KEY_ENV, show_envvar=True,
                                          help="Require `Authorization: Bearer KEY` from clients. Prefer the env "
                                               "var or --api-key-file: `ps` shows command-line arguments to "
                                               "every user."),
    api_key_file: Optional[Path] = typer.Option(None, "--api-key-file", help="Read the clients' key from this "
                                                "file (its first line; keep it chmod 600)."),
    max_body_mb: float = typer.Option(4.0, "--max-body-mb", min=0.001, max=4096.0, help="Larger request bodies get 413."),
    allow_override: bool = typer.Option(True, "--allow-override/--no-allow-override",
                                        help="Let X-TFGRPO-* request headers pick the library/version or "
                                             "turn the prior off."),
    served_name: Optional[str] = typer.Option(None, "--served-model-name", help="Id in /v1/models "
                                                                                "(default: --model)."),
    timeout: Optional[float] = typer.Option(None, "--timeout", min=1.0, max=86400.0,
                                            help="Per-call upstream timeout (s); default 300, and for an "
                                                 "embedded model longer for long answers (60 s + 0.5 s per "
                                                 "max_tokens)."),
    max_attempts: int = typer.Option(2, "--max-attempts", min=1, max=o.MAX_COUNT, help="Attempts per call on transient faults."),
    concurrency: int = typer.Option(64, "--concurrency", min=1, max=4096, help="Max upstream calls in flight; "
                                    "more requests wait their turn (an embedded model: at most its slots)."),
    db: Optional[Path] = typer.Option(None, "--db", help="Store file (default $TFGRPO_HOME/tfgrpo.duckdb)."),
) -> None:
    """OpenAI-compatible proxy that injects the learned prior (POST /v1/chat/completions, GET /v1/models,
    GET /health). Every forwarded call goes to the call log with the injected experience ids."""
    api_key = resolve_key(ctx, "api_key", api_key, api_key_file, flag="--api-key", file_flag="--api-key-file",
                          env=API_KEY_ENV)
    upstream_key = resolve_key(ctx, "upstream_key", upstream_key, upstream_key_file, flag="--upstream-api-key",
                               file_flag="--upstream-api-key-file", env=UPSTREAM_KEY_ENV)
    check_bind(host, api_key)  # before anything starts
    cfg = build_config(
        library=None if library.lower() == "none" else library, version=version, mode=mode, k=k,
        token_cap=token_cap, placement=placement, host=host, port=port, api_key=api_key,
        max_body_bytes=int(max_body_mb * 1024 * 1024), allow_override=allow_override,
        served_model=served_name or model)
    model_cfg = ModelConfig(model=model, api_base=api_base, api_key=upstream_key, gguf=gguf,
                            max_attempts=max_attempts, concurrency=concurrency,
                            **({"timeout_s": timeout} if timeout is not None else {}))
    from tfgrpo.serve.server import ProxyRuntime

    with ProxyRuntime(cfg, model_cfg, db=db, progress=lambda s: console.print(f"[dim]{s}[/]")) as rt:
        rt.serve(on_ready=lambda r: console.print(_banner(r), highlight=False))
    console.print("proxy stopped; calls are in the log (`tfgrpo logs`)")
