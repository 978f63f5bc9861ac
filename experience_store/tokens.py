"""Token counting used for the prior's token cap: tiktoken `cl100k_base`, loaded offline.

Order of attempts (first that works wins, and `token_counter_name()` says which):
1. the cl100k_base rank file bundled inside the installed `litellm` package (found on disk, never
   imported), verified against the official sha256;
2. `tiktoken.get_encoding("cl100k_base")` (its cache, or a download when online);
3. a word-based estimate: each run of letters/digits counts 1 and each other non-space character
   counts 1. It over-counts slightly compared with cl100k on English prose, so caps stay safe.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import logging
import re
import threading
from pathlib import Path

log = logging.getLogger(__name__)

ENCODING = "cl100k_base"
_CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
_LITELLM_FILE = "litellm_core_utils/tokenizers/9b5ad71b2ce5302211f9c61530b329a4922fc6a4"
_CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
_CL100K_SPECIAL = {
    "<|endoftext|>": 100257,
    "<|fim_prefix|>": 100258,
    "<|fim_middle|>": 100259,
    "<|fim_suffix|>": 100260,
    "<|endofprompt|>": 100276,
}
_WORDISH = re.compile(r"\w+|[^\w\s]", re.UNICODE)

_lock = threading.Lock()
_state: dict[str, object] = {}


def _bundled_rank_file() -> Path | None:
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        path = Path(root) / _LITELLM_FILE
        if path.is_file():
            return path
    return None


def _from_bundled():
    import tiktoken

    path = _bundled_rank_file()
    if path is None:
        return None
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != _CL100K_SHA256:
        log.warning("cl100k rank file at %s has an unexpected sha256; not using it", path)
        return None
    ranks = {base64.b64decode(tok): int(rank) for tok, rank in (ln.split() for ln in data.splitlines() if ln)}
    return tiktoken.Encoding(
        name=ENCODING, pat_str=_CL100K_PATTERN, mergeable_ranks=ranks, special_tokens=_CL100K_SPECIAL
    )


def _from_tiktoken():
    import tiktoken

    return tiktoken.get_encoding(ENCODING)


def _encoding():
    with _lock:
        if "enc" not in _state:
            enc, name = None, "words"
            for loader in (_from_bundled, _from_tiktoken):
                try:
                    enc = loader()
                except Exception as exc:  # offline, missing file, bad cache: fall back
                    log.info("tiktoken %s unavailable via %s: %s", ENCODING, loader.__name__, exc)
                    enc = None
                if enc is not None:
                    name = f"tiktoken:{ENCODING}"
                    break
            _state["enc"], _state["name"] = enc, name
        return _state["enc"]


def token_counter_name() -> str:
    """`tiktoken:cl100k_base`, or `words` when the encoding could not be loaded offline."""
    _encoding()
    return str(_state["name"])


def count_tokens(text: str) -> int:
    """Number of tokens in `text` (cl100k_base; word-based estimate as the documented fallback)."""
    enc = _encoding()
    if enc is None:
        return len(_WORDISH.findall(text))
    return len(enc.encode(text, disallowed_special=()))
