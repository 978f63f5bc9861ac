"""`HFChatModel`: the `ChatModel` seam over in-process transformers generation, so a GRPO checkpoint
(or any transformers / GGUF model) runs through the same eval harness as every other model.

Generation is blocking and not thread-safe, so each call runs in a worker thread
(`asyncio.to_thread`) under one lock: one generation at a time; concurrent callers queue."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

from tfgrpo_common.chat import CallLog, CallRecord, Completion, Message


class HFChatModel:
    """A chat model over `model.generate`. `n` samples come from one batched generate call
    (`num_return_sequences`); a `seed` reseeds torch first, so the same seed gives the same samples."""

    def __init__(self, model: Any, tokenizer: Any, *, name: str, call_log: CallLog | None = None) -> None:
        self.model, self.tokenizer, self.name = model, tokenizer, name
        self.call_log = call_log
        self._lock = threading.Lock()
        self.calls = 0
        eos = model.generation_config.eos_token_id if model.generation_config is not None else None
        eos = eos if eos is not None else tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, (list, tuple)) else [eos]) - {None}

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path, *, device: str = "auto",
                        call_log: CallLog | None = None) -> "HFChatModel":
        """Load the --out folder of `tfgrpo grpo` (full weights, or a LoRA adapter merged into its base)."""
        from tfgrpo.grpo.loading import load_checkpoint, require_grpo_extra, resolve_device

        require_grpo_extra()
        model, tok, _ = load_checkpoint(checkpoint, device=resolve_device(device))
        return cls(model, tok, name=f"grpo:{Path(checkpoint).name}", call_log=call_log)

    @classmethod
    def from_model(cls, model: str, *, gguf: str | None = None, device: str = "auto",
                   call_log: CallLog | None = None) -> "HFChatModel":
        """Load a base model (embedded GGUF name, .gguf file, folder or HF name) through transformers."""
        from tfgrpo.grpo.loading import load_causal_lm, require_grpo_extra, resolve_device, resolve_source

        require_grpo_extra()
        m, tok = load_causal_lm(resolve_source(model, gguf), device=resolve_device(device))
        m.eval()
        return cls(m, tok, name=f"hf:{model}", call_log=call_log)

    async def chat(self, messages: list[Message], *, temperature: float = 0.7, max_tokens: int = 512, n: int = 1,
                   stage: str = "chat", seed: int | None = None,
                   meta: dict[str, Any] | None = None) -> list[Completion]:
        return await asyncio.to_thread(self.chat_sync, messages, temperature=temperature, max_tokens=max_tokens,
                                       n=n, stage=stage, seed=seed, meta=meta)

    def chat_sync(self, messages: list[Message], *, temperature: float = 0.7, max_tokens: int = 512, n: int = 1,
                  stage: str = "chat", seed: int | None = None,
                  meta: dict[str, Any] | None = None) -> list[Completion]:
        with self._lock:
            start = time.perf_counter()
            prompt = self.encode(messages)
            rows = self._generate(prompt, temperature, max_tokens, n, seed)
            latency = time.perf_counter() - start
            self.calls += 1
        comps = [self._completion(row, prompt.shape[1], max_tokens, latency / max(1, n)) for row in rows]
        self._log(messages, comps, stage, latency, meta)
        return comps

    def encode(self, messages: list[Message]) -> Any:
        """Prompt ids (1 x T) through the tokenizer's chat template."""
        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        else:  # a model without a chat template: a plain transcript
            text = "\n".join(f"{m['role']}: {m.get('content', '')}" for m in messages) + "\nassistant:"
        ids = tok(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
        return ids.to(self.model.device)

    def _generate(self, prompt: Any, temperature: float, max_tokens: int, n: int, seed: int | None) -> list[Any]:
        import torch

        if seed is not None:
            torch.manual_seed(seed % (2**63))
        sample = temperature > 0
        kwargs: dict[str, Any] = {"max_new_tokens": max_tokens, "pad_token_id": self.tokenizer.pad_token_id,
                                  "attention_mask": torch.ones_like(prompt), "do_sample": sample}
        if sample:
            kwargs.update(temperature=temperature, top_p=1.0, top_k=0, num_return_sequences=n)
        with torch.no_grad():
            out = self.model.generate(prompt, **kwargs)
        rows = [r[prompt.shape[1]:] for r in out]
        return rows if sample else rows * n  # greedy: one decode, n identical samples

    def _completion(self, row: Any, prompt_tokens: int, max_tokens: int, latency: float) -> Completion:
        ids = row.tolist()
        end = next((i for i, t in enumerate(ids) if t in self.eos_ids), None)
        if end is None:
            used = len(ids)
            finish = "length" if used >= max_tokens else "stop"
        else:
            used, finish = end + 1, "stop"
        text = self.tokenizer.decode(ids[: end if end is not None else used], skip_special_tokens=True)
        return Completion(text=text, finish_reason=finish, prompt_tokens=prompt_tokens, completion_tokens=used,
                          model=self.name, latency_s=latency)

    def _log(self, messages: list[Message], comps: list[Completion], stage: str, latency: float,
             meta: dict[str, Any] | None) -> None:
        if self.call_log is None:
            return
        for c in comps:
            self.call_log.record(CallRecord(model=self.name, stage=stage, prompt_tokens=c.prompt_tokens,
                                            completion_tokens=c.completion_tokens, latency_s=latency,
                                            request=messages, response=c.text, finish_reason=c.finish_reason,
                                            meta=dict(meta or {})))

    async def aclose(self) -> None:
        return None
