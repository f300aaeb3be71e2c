"""Report, Section and Finding: the building blocks every analysis adds its results to."""

from __future__ import annotations

import base64
import html
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import jinja2
import pandas as pd

from cortexmap.errors import CortexmapError
from cortexmap.report.figures import figure_png
from cortexmap.utils.io import write_text
from cortexmap.utils.provenance import package_versions

_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("cortexmap.report", "templates"),
    autoescape=jinja2.select_autoescape(["html"]),
)


Evidence = Literal["in-silico", "method-check", "real-data"]

#: The three kinds of evidence a finding can be, and what each means (shown in every report).
EVIDENCE: dict[str, str] = {
    "in-silico": "a measured property of the networks, run next to its control (untrained "
                 "twin, random sets, matched baselines)",
    "method-check": "the analysis recovers a truth planted in simulated data (the phantom "
                    "brain); it checks the method and is never a reproduction of a published "
                    "result",
    "real-data": "networks compared with real brain or behavioural measurements",
}

#: The two sentences that open every summary of findings.
EVIDENCE_INTRO = (
    "Each finding says what kind of evidence it is: **in-silico** findings are measured "
    "properties of the networks, judged against a control (an untrained twin, random unit sets "
    "or a matched baseline); **method-check** rows only test whether an analysis recovers a "
    "truth planted in a simulated (phantom) brain, so they are never reproductions of a "
    "published result; **real-data** findings compare networks with real brain or behavioural "
    "measurements. Each verdict follows from the pass criterion printed beside its numbers, "
    "and that criterion can fail."
)


@dataclass
class Finding:
    """A published claim (or a planted truth) and this run's verdict, with the numbers behind it.

    claim: what is tested. reproduced: whether the pass criterion held (for a ``method-check``:
    whether the planted truth was recovered). numbers: the measured statistics. analysis: which
    analysis produced it. evidence: ``"in-silico"`` (a measured property of the networks),
    ``"method-check"`` (recovering a truth planted in simulated data) or ``"real-data"``.
    criterion: the pass criterion in one sentence. control: the control's numbers (untrained
    twin, random sets, negative-control phantom, baseline), empty when the criterion itself is
    the comparison.
    """

    claim: str
    reproduced: bool
    numbers: str
    analysis: str = ""
    evidence: Evidence = field(kw_only=True)
    criterion: str = field(kw_only=True)
    control: str = field(default="", kw_only=True)

    def __post_init__(self) -> None:
        if self.evidence not in EVIDENCE:
            raise CortexmapError(
                f"Finding evidence must be one of {', '.join(EVIDENCE)}; got {self.evidence!r} "
                f"(claim: {self.claim[:60]!r})."
            )
        if not isinstance(self.criterion, str) or not self.criterion.strip():
            raise CortexmapError(
                f"Finding {self.claim[:60]!r} has no pass criterion; state it in one sentence."
            )
        self.reproduced = bool(self.reproduced)

    @property
    def verdict(self) -> str:
        """"recovered the planted truth: yes/no" for a method check, else "reproduced" or
        "not reproduced"."""
        if self.evidence == "method-check":
            return f"recovered the planted truth: {'yes' if self.reproduced else 'no'}"
        return "reproduced" if self.reproduced else "not reproduced"

    def as_row(self) -> dict[str, Any]:
        """One row of ``findings.csv``: every field plus the verdict wording."""
        return {"analysis": self.analysis, "evidence": self.evidence, "claim": self.claim,
                "verdict": self.verdict, "reproduced": self.reproduced,
                "criterion": self.criterion, "numbers": self.numbers, "control": self.control}


def findings_table(findings: list[Finding]) -> pd.DataFrame:
    """The findings as a table (one row each, columns of :meth:`Finding.as_row`)."""
    cols = ["analysis", "evidence", "claim", "verdict", "reproduced", "criterion", "numbers",
            "control"]
    return pd.DataFrame([f.as_row() for f in findings], columns=cols)


@dataclass
class _Block:
    kind: str  # "text" | "figure" | "table"
    html: str


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"


def _paragraphs(text: str) -> str:
    """Plain text to HTML paragraphs; blank lines separate paragraphs, `code` spans kept."""
    parts = [p.strip() for p in text.strip().split("\n\n") if p.strip()]
    out = []
    for p in parts:
        esc = html.escape(p)
        esc = re.sub(r"`([^`]+)`", r"<code>\1</code>", esc)
        esc = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", esc)
        out.append(f"<p>{esc}</p>")
    return "\n".join(out)


@dataclass
class Section:
    """A titled part of the report; blocks appear in the order they are added."""

    title: str
    intro: str = ""
    blocks: list[_Block] = field(default_factory=list)
    subsections: list[Section] = field(default_factory=list)

    @property
    def anchor(self) -> str:
        return _slug(self.title)

    def text(self, text: str) -> Section:
        self.blocks.append(_Block("text", _paragraphs(text)))
        return self

    def figure(self, fig: Any, caption: str, dpi: int = 110) -> Section:
        """Embed a matplotlib figure (closed afterwards) with a caption saying what it shows."""
        data = base64.b64encode(figure_png(fig, dpi)).decode("ascii")
        alt = html.escape(caption.split(".")[0])
        self.blocks.append(_Block(
            "figure",
            f'<figure><img src="data:image/png;base64,{data}" alt="{alt}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>",
        ))
        return self

    def image(self, png_bytes: bytes, caption: str) -> Section:
        """Embed an already rendered PNG (e.g. a synthesized stimulus)."""
        data = base64.b64encode(png_bytes).decode("ascii")
        self.blocks.append(_Block(
            "figure",
            f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption[:60])}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>",
        ))
        return self

    def table(
        self, df: pd.DataFrame, caption: str, max_rows: int = 50, float_format: str = "{:.3g}"
    ) -> Section:
        shown = df.head(max_rows)
        body = shown.to_html(
            index=False, border=0, classes="data",
            float_format=lambda v: float_format.format(v), na_rep="–",
        )
        more = (
            f"<p class='more'>{len(df) - max_rows} more rows in the table files.</p>"
            if len(df) > max_rows else ""
        )
        self.blocks.append(_Block(
            "table",
            f"<div class='table'><p class='caption'>{html.escape(caption)}</p>{body}{more}</div>",
        ))
        return self

    def brain(self, img: Any, caption: str, threshold: float | None = None,
              title: str | None = None) -> Section:
        """Embed a statistical brain map as a glass brain beside orthogonal slices."""
        import matplotlib.pyplot as plt
        from nilearn import plotting

        fig, axes = plt.subplots(1, 2, figsize=(12, 3.2))
        plotting.plot_glass_brain(
            img, axes=axes[0], threshold=threshold, colorbar=True, plot_abs=False, title=title,
        )
        plotting.plot_stat_map(
            img, axes=axes[1], threshold=threshold, display_mode="ortho", colorbar=True,
            draw_cross=False,
        )
        return self.figure(fig, caption)

    def subsection(self, title: str, intro: str = "") -> Section:
        sub = Section(title=title, intro=intro)
        self.subsections.append(sub)
        return sub


class Report:
    """An HTML report: a summary of findings, then one section per analysis.

    Example::

        report = Report("Layer RDMs on the bundled images")
        sec = report.section("RDMs", "Correlation-distance RDMs of each layer.")
        sec.figure(fig, "RDM of each layer; rows and columns are the 14 images.")
        report.write("runs/demo/report.html")
    """

    def __init__(self, title: str, subtitle: str = "") -> None:
        self.title = title
        self.subtitle = subtitle
        self.sections: list[Section] = []
        self.finding_list: list[Finding] = []
        self.provenance: dict[str, Any] | None = None

    def section(self, title: str, intro: str = "") -> Section:
        sec = Section(title=title, intro=intro)
        self.sections.append(sec)
        return sec

    def findings(self, findings: list[Finding]) -> Report:
        self.finding_list.extend(findings)
        return self

    def render(self) -> str:
        anchors: set[str] = set()
        for sec in self._all_sections():
            base, n = sec.anchor, 1
            anchor = base
            while anchor in anchors:
                n += 1
                anchor = f"{base}-{n}"
            anchors.add(anchor)
            sec._anchor_html = anchor  # type: ignore[attr-defined]
        template = _TEMPLATES.get_template("report.html.j2")
        return template.render(
            title=self.title,
            subtitle=self.subtitle,
            sections=self.sections,
            findings=self.finding_list,
            evidence_intro=_paragraphs(EVIDENCE_INTRO),
            intro_html=_paragraphs,
            created=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            versions=package_versions(),
            provenance=self.provenance,
        )

    def _all_sections(self) -> list[Section]:
        out: list[Section] = []
        stack = list(reversed(self.sections))
        while stack:
            sec = stack.pop()
            out.append(sec)
            stack.extend(reversed(sec.subsections))
        return out

    def write(self, path: str | os.PathLike) -> Path:
        """Render and write the report atomically; returns the path."""
        return write_text(path, self.render())
