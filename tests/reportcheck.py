"""Checks on written reports shared by the tests: PNG headers, <img> sources, and a headless
Chromium run that proves every image of a report decodes in a real browser."""

from __future__ import annotations

import re
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]

# A test-only page placed beside a report: the same relative image sources plus one missing
# image; after window load it prints each image's naturalWidth (0 = failed to load).
_PROBE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>probe</title></head><body>
{imgs}
<script>
window.addEventListener("load", function () {{
  var w = [];
  for (var i = 0; i < document.images.length; i++) w.push(document.images[i].naturalWidth);
  var out = document.createElement("pre");
  out.textContent = "WIDTHS=" + w.join(",") + ";";
  document.body.appendChild(out);
}});
</script>
</body></html>
"""


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the PNG's IHDR chunk; asserts the PNG signature."""
    data = Path(path).read_bytes()
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


class _ImgCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.imgs: list[dict[str, str | None]] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.imgs.append(dict(attrs))


def img_tags(page: str) -> list[dict[str, str | None]]:
    parser = _ImgCollector()
    parser.feed(page)
    return parser.imgs


def img_srcs(page: str) -> list[str]:
    return [i["src"] for i in img_tags(page)]


def need_chromium() -> Path:
    """The browser, or skip the calling test with the command that installs it."""
    if not CHROMIUM.exists():
        reason = (f"{CHROMIUM} not found; install it with "
                  "`apt-get update && apt-get install -y chromium` to run the browser test")
        print(reason)
        pytest.skip(reason)
    return CHROMIUM


def run_chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"chromium-profile-{len(list(tmp_path.glob('chromium-profile-*')))}"
    return subprocess.run([str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=60, check=False)


def browser_image_widths(report: Path, tmp_path: Path) -> list[int]:
    """naturalWidth of every image of ``report`` as Chromium decodes it, in page order.

    Asserts that a deliberately missing image reads 0, so a pass is not vacuous."""
    srcs = img_srcs(report.read_text(encoding="utf-8"))
    probe = report.parent / "probe.html"
    imgs = "\n".join(f'<img src="{s}">' for s in [*srcs, "missing.png"])
    probe.write_text(_PROBE.format(imgs=imgs), encoding="utf-8")
    try:
        res = run_chromium(tmp_path, "--virtual-time-budget=5000", "--dump-dom", probe.as_uri())
    finally:
        probe.unlink()
    assert res.returncode == 0, res.stderr[-2000:]
    m = re.search(r"WIDTHS=([0-9,]*);", res.stdout)
    assert m, f"probe script did not run; DOM was:\n{res.stdout[-2000:]}"
    widths = [int(w) for w in m.group(1).split(",")]
    assert widths[-1] == 0, "a missing image must report width 0, else the check is vacuous"
    return widths[:-1]
