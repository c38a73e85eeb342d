"""The noticeboard as a PDF, printed by headless Chromium from the bot's own page.

Why a browser and not a Python PDF library: the noticeboard is laid out once, in HTML with
print CSS (``@page { size: A4 }``), and anyone can print that same page from their own
browser. Printing it with Chromium gives exactly that sheet; a PDF library would need a second
layout of the same content that drifts from the first (and the pure-Python ones cannot lay out
HTML and CSS columns), while WeasyPrint needs Pango and friends installed anyway. The price is
that the operator installs Chromium (Debian: ``apt install chromium``) for ``!noticeboard``;
without it the command says so, and the page itself still prints from any browser.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

from civicbot.core.public import PublicError

TIMEOUT_S = 60
# The flags a headless print needs on a server: no GPU, no first-run or background traffic of
# Chromium's own, a fresh profile each time. The page has no scripts (its CSP forbids them)
# and comes from the bot itself, so Chromium's sandbox (which needs user namespaces, often off
# in containers and for root) is not what keeps it safe.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-pdf-header-footer",
    "--run-all-compositor-stages-before-draw",
)
NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium(configured: str = "") -> str | None:
    if configured:
        return configured if Path(configured).exists() or shutil.which(configured) else None
    return next((found for name in NAMES if (found := shutil.which(name))), None)


async def print_pdf(url: str, chromium: str = "") -> bytes:
    """Print ``url`` to PDF with headless Chromium; raises :class:`PublicError` if it can't."""
    binary = find_chromium(chromium)
    if binary is None:
        raise PublicError(
            "I can't print here: Chromium is not installed where I run (the operator can "
            "install it). The noticeboard page prints from any browser."
        )
    with tempfile.TemporaryDirectory(prefix="civicbot-print-") as tmp:
        out = Path(tmp) / "noticeboard.pdf"
        process = await asyncio.create_subprocess_exec(
            binary, *FLAGS, f"--user-data-dir={tmp}/profile", f"--print-to-pdf={out}", url,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        try:
            await asyncio.wait_for(process.wait(), TIMEOUT_S)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise PublicError("Printing took too long; please try again later.") from None
        if not out.exists() or out.stat().st_size == 0:
            raise PublicError("Printing failed; the operator's log may say why.")
        return out.read_bytes()
