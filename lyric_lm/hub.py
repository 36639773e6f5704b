"""Where a pretrained model comes from: a local directory, the local HF cache, or the hub (checked fast)."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from huggingface_hub import try_to_load_from_cache

from lyric_lm.errors import LyricLMError

# Published GPT-2 shapes (layers, width, heads); all take 1,024 positions and GPT-2's 50,257-token vocabulary.
GPT2_SHAPES: dict[str, tuple[int, int, int]] = {
    "gpt2": (12, 768, 12),
    "gpt2-medium": (24, 1024, 16),
    "gpt2-large": (36, 1280, 20),
    "gpt2-xl": (48, 1600, 25),
}


# Hugging Face's offline switches: the hub's own, and the older per-library ones that still apply.
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")


def offline_mode() -> str | None:
    """The offline variable the user set (e.g. `HF_HUB_OFFLINE`), or None: the libraries then use their caches only."""
    return next((v for v in OFFLINE_VARIABLES if os.environ.get(v, "0").lower() in ("1", "true", "yes", "on")), None)


def unreachable_reason() -> str:
    """Why the hub cannot be reached, for error messages."""
    variable = offline_mode()
    return f"offline mode is set ({variable}=1)" if variable else "the Hugging Face hub is unreachable"


def hub_reachable(timeout: float = 3.0) -> bool:
    """True if the hub's host accepts a TCP connection (or a proxy is set, which we cannot probe); False offline.

    transformers would otherwise retry for about a minute and print a page of warnings before failing.
    """
    if offline_mode():
        return False
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def resolve_pretrained(name_or_path: str, what: str = "model") -> tuple[str, dict]:
    """Return (source, from_pretrained kwargs) for a hub id or a local directory, or raise one clear error."""
    path = Path(name_or_path).expanduser()
    if path.exists() or name_or_path.startswith((".", "/", "~")):
        if not (path / "config.json").is_file() and not (path / "tokenizer_config.json").is_file():
            raise LyricLMError(
                f"{path} is not a Hugging Face {what} directory (no config.json); "
                "point model.name_or_path at a folder written by save_pretrained"
            )
        return str(path), {}
    if hub_reachable():
        return name_or_path, {}
    if isinstance(try_to_load_from_cache(name_or_path, "config.json"), str):
        return name_or_path, {"local_files_only": True}
    raise LyricLMError(
        f"{what} '{name_or_path}' cannot be downloaded ({unreachable_reason()}) and is not in the "
        "local cache; train offline with model=tiny or model.from_scratch=true, "
        "or set model.name_or_path=/path/to/local/dir"
    )
