"""`tfgrpo serve`: the OpenAI-compatible proxy that injects a library's prior into every call."""
