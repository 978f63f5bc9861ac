"""tfgrpo: Training-Free GRPO — improve an LLM agent with a learned experience library, no weight updates.

`tfgrpo.completion` / `tfgrpo.acompletion` (litellm-shaped, prior applied) and `tfgrpo.use_library`
(a prior for an existing OpenAI client) load lazily, so `import tfgrpo` stays light."""

__version__ = "0.1.0"

_API = ("completion", "acompletion", "use_library", "Library")


def __getattr__(name):
    if name in _API:
        from tfgrpo import api

        return getattr(api, name)
    raise AttributeError(f"module 'tfgrpo' has no attribute {name!r}")
