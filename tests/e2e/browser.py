"""Driving the web pages in Debian's headless Chromium through Playwright (no downloaded browser).

`PageCheck` is what every journey does on every page it reaches: screenshots at phone (390 px)
and desktop width under the test output directory, axe-core in the page (0 serious or critical
violations), and no Content-Security-Policy violation or script error on the console.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM = os.environ.get("STAYBOOK_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
AXE = Path(__file__).with_name("assets") / "axe.min.js"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
OUTPUT = Path(os.environ.get("STAYBOOK_TEST_OUTPUT", Path(__file__).resolve().parents[2] / "test-output")) / "web"


def chromium_available() -> bool:
    return Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is not None


@dataclass
class PageCheck:
    journey: str
    problems: list[str] = field(default_factory=list)
    shots: list[Path] = field(default_factory=list)
    step: int = 0

    def watch(self, page) -> None:
        """Records CSP violations and uncaught script errors of the page."""

        def on_console(message) -> None:
            text = message.text
            if message.type == "error" and ("Content Security Policy" in text or "Refused to" in text):
                self.problems.append(f"{page.url}: {text}")

        page.on("console", on_console)
        page.on("pageerror", lambda error: self.problems.append(f"{page.url}: script error {error}"))

    def __call__(self, page, name: str) -> None:
        """Screenshots at both widths and the accessibility check, on the page as it is now."""
        self.step += 1
        folder = OUTPUT / self.journey
        folder.mkdir(parents=True, exist_ok=True)
        slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
        for label, size in (("phone", PHONE), ("desktop", DESKTOP)):
            page.set_viewport_size(size)
            page.wait_for_timeout(150)  # layout and the map settle after a resize
            path = folder / f"{self.step:02d}-{slug}-{label}.png"
            page.screenshot(path=str(path), full_page=True)
            self.shots.append(path)
        page.evaluate(AXE.read_text())
        violations = page.evaluate(
            """async () => {
                const result = await axe.run(document, {resultTypes: ["violations"]});
                return result.violations
                    .filter(v => v.impact === "serious" || v.impact === "critical")
                    .map(v => `${v.id} (${v.impact}): ${v.help} -> `
                        + v.nodes.slice(0, 3).map(n => n.target.join(" ")).join(", "));
            }"""
        )
        self.problems.extend(f"{name}: {v}" for v in violations)

    def assert_clean(self) -> None:
        assert not self.problems, "\n".join(self.problems)
