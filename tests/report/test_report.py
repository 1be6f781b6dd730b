"""Static HTML report: PNG plots, the HTML writer, and a headless-Chromium load check."""

from __future__ import annotations

import re
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from skillbank.report.html import Section, format_cell, write_report
from skillbank.report.plots import curves, heatmap

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the PNG's IHDR chunk; asserts the PNG signature."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
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


# ----------------------------------------------------------------------------------- plots


def test_heatmap_writes_png(tmp_path):
    out = heatmap([[0.1, 0.9, 0.5], [1.0, 0.0, float("nan")]], ["arith", "strings"],
                  ["a", "b", "c"], tmp_path / "sub" / "heat.png", "accuracy")
    assert out == tmp_path / "sub" / "heat.png"
    w, h = png_size(out)
    assert w > 100 and h > 100
    assert out.stat().st_size > 2000


def test_heatmap_annotations_depend_on_values(tmp_path):
    a = heatmap([[0.11]], ["r"], ["c"], tmp_path / "a.png", "t")
    b = heatmap([[0.12]], ["r"], ["c"], tmp_path / "b.png", "t")  # same colour, other label
    assert a.read_bytes() != b.read_bytes()


@pytest.mark.parametrize("matrix, rows, cols", [
    ([[0.1, 0.2]], ["r"], ["c"]),            # too many columns
    ([[0.1], [0.2]], ["r"], ["c"]),          # too many rows
    ([], [], []),                            # empty
])
def test_heatmap_rejects_bad_shapes(tmp_path, matrix, rows, cols):
    with pytest.raises(ValueError):
        heatmap(matrix, rows, cols, tmp_path / "x.png", "t")


@pytest.mark.parametrize("logy", [False, True])
def test_curves_writes_png(tmp_path, logy):
    series = {"arith": [(s, 2.0 / (s + 1)) for s in range(0, 100, 10)],
              "strings": [(30, 0.5), (0, 1.5), (60, 0.2)],   # unsorted on purpose
              "empty": []}
    out = curves(series, tmp_path / "loss.png", "training loss", "step", "loss", logy=logy)
    w, h = png_size(out)
    assert w > 100 and h > 100
    assert out.stat().st_size > 2000


def test_curves_with_no_data(tmp_path):
    png_size(curves({}, tmp_path / "none.png", "t", "x", "y"))


# ------------------------------------------------------------------------------------ html


@pytest.mark.parametrize("value, text, numeric", [
    (0.123456, "0.123", True),
    (1, "1", True),
    (400, "400", True),
    (2.0, "2.000", True),
    (float("nan"), "nan", True),
    (True, "True", False),
    (None, "", False),
    ("arith", "arith", False),
])
def test_format_cell(value, text, numeric):
    assert format_cell(value) == (text, numeric)


def test_format_cell_numpy_scalars():
    np = pytest.importorskip("numpy")
    assert format_cell(np.float32(0.5)) == ("0.500", True)
    assert format_cell(np.int64(7)) == ("7", True)


def _build_report(out_dir: Path) -> tuple[Path, list[Section]]:
    heatmap([[0.9, 0.2], [0.3, 0.8]], ["arith", "strings"], ["arith", "strings"],
            out_dir / "heatmap.png", "transfer accuracy")
    curves({"arith": [(0, 2.0), (10, 1.0), (20, 0.5)]}, out_dir / "loss.png",
           "training loss", "step", "loss", logy=True)
    sections = [
        Section("Overview", text="Skills & worlds <b>bold?</b>\n\nSecond paragraph."),
        Section("Injection", text="<script>"),
        Section("Scores", table=(["skill", "accuracy", "n"],
                                 [["arith", 0.91234, 400], ["<strings>", 0.5, 12]])),
        Section("Plots", images=["heatmap.png", "loss.png"]),
    ]
    return write_report(out_dir, "skillbank <report>", sections), sections


def test_write_report_contents(tmp_path):
    path, sections = _build_report(tmp_path)
    assert path == tmp_path / "report.html"
    page = path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    for s in sections:
        assert f"<h2>{s.title}</h2>" in page
    assert "<title>skillbank &lt;report&gt;</title>" in page
    # all caller text escaped; the only tags are the report's own
    assert "&lt;script&gt;" in page
    assert "<script" not in page.lower()      # and therefore no JavaScript at all
    assert "Skills &amp; worlds &lt;b&gt;bold?&lt;/b&gt;" in page
    assert "<b>" not in page
    assert "<p>Second paragraph.</p>" in page
    # table: 3 decimals for reals, integers exact, text escaped
    assert '<td class="num">0.912</td>' in page
    assert '<td class="num">0.500</td>' in page
    assert '<td class="num">400</td>' in page
    assert "<td>&lt;strings&gt;</td>" in page
    # one <img> per image, relative src, with alt text
    imgs = img_tags(page)
    assert [i["src"] for i in imgs] == ["heatmap.png", "loss.png"]
    assert all(i.get("alt") for i in imgs)
    # self-contained: no external URLs; links are in-page anchors, srcs relative paths
    assert "http://" not in page and "https://" not in page
    assert all(h.startswith("#") for h in re.findall(r'href="([^"]*)"', page))
    assert all(":" not in s and not s.startswith("/") for s in re.findall(r'src="([^"]*)"', page))


def test_write_report_missing_image_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        write_report(tmp_path, "t", [Section("s", images=["nope.png"])])
    assert not (tmp_path / "report.html").exists()
    write_report(tmp_path, "t", [Section("s", images=["nope.png"])], check_images=False)
    assert (tmp_path / "report.html").exists()


@pytest.mark.parametrize("name", ["/etc/x.png", "../x.png", "http://example.com/x.png", ""])
def test_write_report_rejects_non_relative_images(tmp_path, name):
    with pytest.raises(ValueError):
        write_report(tmp_path, "t", [Section("s", images=[name])], check_images=False)


def test_write_report_image_names_are_url_encoded(tmp_path):
    heatmap([[0.5]], ["r"], ["c"], tmp_path / "my plot.png", "t")
    page = write_report(tmp_path, "t", [Section("s", images=["my plot.png"])]).read_text()
    assert [i["src"] for i in img_tags(page)] == ["my%20plot.png"]


def test_write_report_bad_table_row(tmp_path):
    with pytest.raises(ValueError):
        write_report(tmp_path, "t", [Section("s", table=(["a", "b"], [[1]]))])


def test_section_images_default_not_shared():
    a, b = Section("a"), Section("b")
    a.images.append("x.png")
    assert b.images == []


# --------------------------------------------------------------------------------- browser

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


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"chromium-profile-{len(list(tmp_path.glob('chromium-profile-*')))}"
    return subprocess.run([str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def chromium():
    if not CHROMIUM.exists():
        reason = (f"{CHROMIUM} not found; install it with "
                  "`apt-get update && apt-get install -y chromium` to run the browser test")
        print(reason)
        pytest.skip(reason)
    return CHROMIUM


def test_report_images_load_in_chromium(chromium, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    report, _ = _build_report(out_dir)
    srcs = [i["src"] for i in img_tags(report.read_text(encoding="utf-8"))]
    assert srcs == ["heatmap.png", "loss.png"]

    # 1. the report itself renders: screenshot written, <img> elements in the live DOM
    shot = tmp_path / "shot.png"
    res = _chromium(tmp_path, "--window-size=1200,2000", f"--screenshot={shot}",
                    report.as_uri())
    assert shot.exists(), res.stderr[-2000:]
    assert png_size(shot) == (1200, 2000)
    res = _chromium(tmp_path, "--dump-dom", report.as_uri())
    assert res.returncode == 0, res.stderr[-2000:]
    assert [i["src"] for i in img_tags(res.stdout)] == srcs
    assert "&lt;script&gt;" in res.stdout

    # 2. every image decodes: a test-only page next to the report, same relative srcs plus one
    #    missing image, reports each naturalWidth after window load (0 = failed to load)
    probe = out_dir / "probe.html"
    imgs = "\n".join(f'<img src="{s}">' for s in [*srcs, "missing.png"])
    probe.write_text(_PROBE.format(imgs=imgs), encoding="utf-8")
    res = _chromium(tmp_path, "--virtual-time-budget=5000", "--dump-dom", probe.as_uri())
    assert res.returncode == 0, res.stderr[-2000:]
    m = re.search(r"WIDTHS=([0-9,]*);", res.stdout)
    assert m, f"probe script did not run; DOM was:\n{res.stdout[-2000:]}"
    widths = [int(w) for w in m.group(1).split(",")]
    assert widths[-1] == 0, "a missing image must report width 0, else the check is vacuous"
    expected = [png_size(out_dir / s)[0] for s in srcs]
    assert widths[:-1] == expected
    assert all(w > 0 for w in widths[:-1])
