"""The docs site: it builds with --strict (no broken link, no missing reference), its API reference has every
public optimizer, schedule and callback with its arguments, and the README stays short."""

import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import lrlab.schedules
import lrlab.train.callbacks
from lrlab.optim import OPTIMIZERS

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    mkdocs = Path(sys.executable).parent / "mkdocs"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run([str(mkdocs), "build", "--strict", "--site-dir", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


def _anchors_in(page: Path, objects: list) -> list[str]:
    html = page.read_text()
    return [
        f"{obj.__module__}.{obj.__name__}" for obj in objects if f'id="{obj.__module__}.{obj.__name__}"' not in html
    ]


def test_every_optimizer_is_in_the_api_reference_with_its_arguments(site):
    page = site / "api" / "optim" / "index.html"
    assert _anchors_in(page, list(OPTIMIZERS.values())) == []
    html = page.read_text()
    for cls in OPTIMIZERS.values():
        entry = _entry(html, f"{cls.__module__}.{cls.__name__}")
        missing = [name for name in inspect.signature(cls).parameters if name not in entry]
        assert missing == [], (cls.__name__, missing)
        assert "Raises" in entry, cls.__name__


def _entry(html: str, qualname: str) -> str:
    """The HTML of one object's entry: from its anchor to the next anchor that is not one of its members."""
    anchors = [(m.start(), m[1]) for m in re.finditer(r'id="(lrlab\.[^"]+)"', html)]
    start = next(pos for pos, name in anchors if name == qualname)
    end = next((pos for pos, name in anchors if pos > start and not name.startswith(qualname)), len(html))
    return html[start:end]


def test_every_schedule_is_in_the_api_reference(site):
    public = [getattr(lrlab.schedules, n) for n in lrlab.schedules.__all__]
    objects = [obj for obj in public if inspect.isclass(obj) or inspect.isfunction(obj)]
    assert len(objects) >= 10
    assert _anchors_in(site / "api" / "schedules" / "index.html", objects) == []


def test_every_callback_is_in_the_api_reference(site):
    public = [getattr(lrlab.train.callbacks, n) for n in lrlab.train.callbacks.__all__]
    objects = [obj for obj in public if inspect.isclass(obj) or inspect.isfunction(obj)]
    assert len(objects) >= 25
    assert _anchors_in(site / "api" / "train" / "index.html", objects) == []


def test_the_tools_for_any_loop_are_in_the_api_reference(site):
    from lrlab.tuning import AutoAnneal, AutoLR, find_lr_with

    assert _anchors_in(site / "api" / "tuning" / "index.html", [AutoLR, AutoAnneal, find_lr_with]) == []


def test_the_guide_pages_and_results_are_built(site):
    for page in ("guide/command-line", "guide/autolr", "guide/optimizers", "architecture", "changelog",
                 "results/suite", "results/auto-anneal", "results/space"):  # fmt: skip
        assert (site / page / "index.html").stat().st_size > 5_000, page


def test_the_readme_is_short_and_points_to_the_docs():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 300
    for target in ("docs/guide/command-line.md", "docs/architecture.md", "docs/api/index.md", "make docs"):
        assert target in readme, target
    assert "lrlab fit --auto" in readme
