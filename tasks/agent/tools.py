"""Tools an agent can call: typed Python functions with a JSON schema, plus a registry.

    from tasks.agent.tools import register_tool

    @register_tool
    def word_count(text: str) -> str:
        '''Count the words in a text.'''
        return str(len(text.split()))

The name is the function name, the description its docstring's first paragraph, and the argument
schema comes from the type hints (pydantic validates the arguments). A tool may be sync (run in a
worker thread) or async; whatever it returns is turned into the observation text with `str()`, and an
exception becomes an `Error: ...` observation — a tool never breaks the agent loop. The runner
enforces a per-tool timeout; tools that can stop their own work early read it with
`current_timeout_s()` (the `python` tool passes it to the sandbox, which kills the process).
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import json
import re
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from tasks.agent.sandbox import DEFAULT_SANDBOX, SandboxResult, require_sandbox, run_python
from tfgrpo_common.errors import ConfigError

_TIMEOUT: contextvars.ContextVar[float | None] = contextvars.ContextVar("tool_timeout_s", default=None)
_FENCE = re.compile(r"^\s*```[\w+-]*[ \t]*\n(.*?)\n?[ \t]*```\s*$", re.S)


def current_timeout_s(default: float = 10.0) -> float:
    """The timeout the runner set for the tool call in progress (`default` outside a run)."""
    value = _TIMEOUT.get()
    return default if value is None else value


def strip_fence(text: str) -> str:
    """`text` without a surrounding ``` fence (and its language tag), else stripped `text`."""
    m = _FENCE.match(text)
    return m.group(1) if m else text.strip()


@dataclass(frozen=True)
class Tool:
    """A callable tool. Build it with `Tool.from_function(fn)` or the `tool` decorator."""

    name: str
    description: str
    fn: Callable[..., Any]
    args_model: type[BaseModel]
    timeout_s: float | None = None
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def from_function(cls, fn: Callable[..., Any], *, name: str | None = None, description: str | None = None,
                      timeout_s: float | None = None) -> "Tool":
        name = name or fn.__name__
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]{0,63}", name):
            raise ConfigError(f"tool name {name!r} must be letters, digits, '_' or '-' (max 64 chars)")
        doc = inspect.getdoc(fn) or ""
        desc = description or doc.split("\n\n")[0].replace("\n", " ").strip() or f"The {name} tool."
        return cls(name, desc, fn, _args_model(fn, name), timeout_s)

    @property
    def parameters(self) -> dict[str, Any]:
        """The JSON schema of the arguments."""
        schema = self.args_model.model_json_schema()
        schema.pop("title", None)
        return schema

    def openai_spec(self) -> dict[str, Any]:
        """The OpenAI `tools=[...]` entry, for models with native tool calling."""
        return {"type": "function",
                "function": {"name": self.name, "description": self.description, "parameters": self.parameters}}

    def signature_text(self) -> str:
        """`name(arg: type, ...)`: how the tool is shown to the model in the text protocol."""
        props = self.parameters.get("properties", {})
        args = ", ".join(f"{k}: {v.get('type', 'any')}" for k, v in props.items())
        return f"{self.name}({args})"

    def parse_args(self, raw: str | dict[str, Any]) -> dict[str, Any]:
        """Arguments from a text-protocol input or a native call: a JSON object with the fields, or —
        for a tool with one string argument — the raw text itself (a ``` fence is removed)."""
        fields = self.args_model.model_fields
        if isinstance(raw, str):
            text = strip_fence(raw)
            parsed = _json_object(text)
            if parsed is not None and set(parsed) <= set(fields) and parsed:
                raw = parsed
            elif len(fields) == 1:
                raw = {next(iter(fields)): text}
            else:
                raise ValueError(f"expected a JSON object with fields {sorted(fields)}")
        return self.args_model.model_validate(raw).model_dump()

    async def call(self, raw: str | dict[str, Any], *, timeout_s: float) -> tuple[str, bool]:
        """Run the tool; returns (observation text, is_error). Never raises on tool failures."""
        try:
            args = self.parse_args(raw)
        except (ValueError, ValidationError) as exc:
            return f"Error: invalid input for tool {self.name}: {_short(exc)}", True
        token = _TIMEOUT.set(timeout_s)
        try:
            if inspect.iscoroutinefunction(self.fn):
                result = await asyncio.wait_for(self.fn(**args), timeout_s)
            else:  # the worker thread inherits the context, so the tool sees current_timeout_s()
                result = await asyncio.wait_for(asyncio.to_thread(self.fn, **args), timeout_s + 2.0)
        except asyncio.TimeoutError:
            return f"Error: tool {self.name} timed out after {timeout_s:g} s", True
        except Exception as exc:  # a tool failure is an observation, not a crash
            return f"Error: {type(exc).__name__}: {exc}", True
        finally:
            _TIMEOUT.reset(token)
        if isinstance(result, SandboxResult):
            return sandbox_observation(result), result.error is not None
        return str(result), False


def _args_model(fn: Callable[..., Any], name: str) -> type[BaseModel]:
    try:
        hints = inspect.get_annotations(fn, eval_str=True)
    except Exception as exc:
        raise ConfigError(f"tool {name}: cannot read the type hints of {fn!r}: {exc}") from exc
    fields: dict[str, Any] = {}
    for pname, param in inspect.signature(fn).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise ConfigError(f"tool {name}: *args/**kwargs are not supported; name each argument")
        if pname not in hints:
            raise ConfigError(f"tool {name}: argument {pname!r} needs a type hint (e.g. `{pname}: str`)")
        default = ... if param.default is param.empty else param.default
        fields[pname] = (hints[pname], default)
    return create_model(f"{name}_args", __config__=ConfigDict(extra="forbid"), **fields)


def _json_object(text: str) -> dict[str, Any] | None:
    if not text.startswith("{"):
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _short(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'input'}: {e['msg']}" for e in exc.errors())
    return str(exc)


def tool(fn: Callable[..., Any] | None = None, *, name: str | None = None, timeout_s: float | None = None):
    """Decorator: turn a typed function into a `Tool` (not registered; see `register_tool`)."""
    def wrap(f: Callable[..., Any]) -> Tool:
        return Tool.from_function(f, name=name, timeout_s=timeout_s)
    return wrap(fn) if fn is not None else wrap


_REGISTRY: dict[str, Tool] = {}


def register_tool(fn: Callable[..., Any] | Tool | None = None, *, name: str | None = None,
                  timeout_s: float | None = None, replace: bool = False):
    """Register a tool by name (usable as `@register_tool` or `@register_tool(name=...)`); returns it."""
    def wrap(f: Callable[..., Any] | Tool) -> Tool:
        t = f if isinstance(f, Tool) else Tool.from_function(f, name=name, timeout_s=timeout_s)
        if t.name in _REGISTRY and not replace:
            raise ConfigError(f"tool {t.name!r} is already registered; pass replace=True to override it")
        _REGISTRY[t.name] = t
        return t
    return wrap(fn) if fn is not None else wrap


def get_tool(name: str) -> Tool:
    if name not in _REGISTRY:
        raise ConfigError(f"unknown tool {name!r}; registered: {', '.join(sorted(_REGISTRY)) or 'none'}. "
                          "Add one with tasks.agent.tools.register_tool.")
    return _REGISTRY[name]


def registered_tools() -> dict[str, Tool]:
    return dict(_REGISTRY)


def sandbox_observation(res: SandboxResult) -> str:
    """A sandbox result as observation text: stdout, then stderr, then the error line."""
    parts = []
    if res.stdout:
        parts.append(res.stdout.rstrip("\n"))
    if res.stderr and res.error is None:
        parts.append("[stderr]\n" + res.stderr.rstrip("\n"))
    elif res.stderr:
        parts.append(res.stderr.rstrip("\n"))
    if res.truncated:
        parts.append("[output truncated]")
    if res.error is not None and (not res.stderr or res.error not in res.stderr):
        parts.append(f"Error: {res.error}")
    if not parts:
        return "(no output: use print() to see values)"
    return "\n".join(parts)


def python_tool(*, sandbox: str = DEFAULT_SANDBOX, memory_mb: int = 512, max_output: int = 20_000,
                timeout_s: float | None = None) -> Tool:
    """The `python` tool: runs code in `run_python` in `sandbox` (`bwrap` | `process`, see
    `tasks.agent.sandbox`) with the runner's per-tool timeout. `meta["sandbox"]` records which."""
    def python(code: str) -> SandboxResult:
        """Run Python 3 code in a fresh sandboxed process and return what it prints (stdout and errors).
        Nothing persists between calls: print() every value you need."""
        return run_python(code, sandbox=sandbox, timeout_s=current_timeout_s(), memory_mb=memory_mb,
                          max_output=max_output)
    return replace(Tool.from_function(python, timeout_s=timeout_s), meta={"sandbox": sandbox})


def require_tools_runnable(tools: list[Tool]) -> None:
    """Refuse (`SandboxUnavailableError`, with the fix) when a tool's sandbox cannot run on this machine."""
    for sandbox in dict.fromkeys(t.meta.get("sandbox") for t in tools if t.meta.get("sandbox")):
        require_sandbox(sandbox)


register_tool(python_tool())
