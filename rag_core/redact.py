"""Credentials out of everything shown or stored: logs, metadata, status, error messages.

A start URL may carry ``user:password@`` and a graph URI may too; both reach log lines,
asset metadata and exception texts unless masked on the way out. Masking keeps the rest of
the URL (scheme, host, port, path), so a message still says which server was meant.
"""

from __future__ import annotations

import logging
import re
from typing import Any

MASK = "***"
# scheme://userinfo@ : userinfo is everything up to the last '@' before the host, and may
# itself hold ':' and (percent-encoded or not) any other character but '/', '?', '#', space.
_USERINFO_RE = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<userinfo>[^/?#\s@]*@)")
# Bearer tokens and password=... pairs, should one end up in a message.
_BEARER_RE = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+")
_PASSWORD_RE = re.compile(r"(?i)\b(password|passwd|pwd)(\s*[=:]\s*)([^\s,;&'\"]+)")


def mask_secrets(text: str) -> str:
    """``text`` with URL credentials, bearer tokens and ``password=`` values replaced."""
    if not text:
        return text
    text = _USERINFO_RE.sub(lambda m: f"{m['scheme']}{MASK}@", text)
    text = _BEARER_RE.sub(lambda m: f"{m[1]}{MASK}", text)
    return _PASSWORD_RE.sub(lambda m: f"{m[1]}{m[2]}{MASK}", text)


def mask_value(value: Any) -> Any:
    """``value`` with every string in it masked (dicts, lists and tuples are walked)."""
    if isinstance(value, str):
        return mask_secrets(value)
    if isinstance(value, dict):
        return {mask_value(k): mask_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(mask_value(v) for v in value)
    return value


class MaskingFilter(logging.Filter):
    """Logging filter that masks credentials in each record's final message."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is logged as is, never dropped
            return True
        masked = mask_secrets(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def install_masking(logger: logging.Logger | None = None) -> None:
    """Mask every record reaching the handlers of ``logger`` (the root logger by default)."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, MaskingFilter) for f in handler.filters):
            handler.addFilter(MaskingFilter())


def unmask_urls(urls: list[str], originals: list[str]) -> list[str]:
    """``urls`` with each masked URL replaced by the original it was masked from.

    Resource config is stored in Dagster's snapshots and shown in its UI, so it holds start
    URLs masked; the crawl itself needs the credentials, taken from the run's environment.
    """
    real = {mask_secrets(url): url for url in originals}
    return [real.get(url, url) for url in urls]
