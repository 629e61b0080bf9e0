"""The policy's time line drawn as SVG (engine/axis.py gives the points): a horizontal axis of
days relative to the due date, one row a stage with its day, its catch-up window as a bar, its
channel and the channels it may go out on instead; the restart day under the axis.

The SVG is text only: every label escaped, no script, no external reference; it can be inlined in
a page or served as image/svg+xml.
"""
from __future__ import annotations

from html import escape

from babel.dates import format_date

from engine.policy import Policy
from engine.axis import Point, timeline

__all__ = ["LABELS", "timeline_svg"]

LABELS = {
    "fr": {"title": "Calendrier des relances", "due": "échéance", "day": "J{day:+d}", "window": "rattrapage {n} j",
           "no_email": "lettre sans courriel", "refused": "lettre si courriel refusé", "restart":
           "Reprise : rien de ce qui se déclenche avant le {date} n'est envoyé", "days": "jours après l'échéance",
           "email": "courriel", "letter": "lettre", "to": "vers {where}"},
    "en": {"title": "Reminder timeline", "due": "due date", "day": "D{day:+d}", "window": "catch-up {n} d",
           "no_email": "letter without email", "refused": "letter if the email is refused", "restart":
           "Restart: nothing triggered before {date} is sent", "days": "days after the due date",
           "email": "email", "letter": "letter", "to": "to {where}"},
    "es": {"title": "Calendario de recordatorios", "due": "vencimiento", "day": "D{day:+d}",
           "window": "recuperación {n} d", "no_email": "carta sin correo", "refused": "carta si el correo es rechazado",
           "restart": "Reanudación: no se envía nada de lo que se activa antes del {date}",
           "days": "días después del vencimiento", "email": "correo", "letter": "carta", "to": "a {where}"},
}

WIDTH, LEFT, RIGHT, TOP, ROW = 960, 40, 40, 56, 64


def _text(x: float, y: float, text: str, *, size: int = 12, anchor: str = "start", weight: str = "normal",
          cls: str = "") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" font-weight="{weight}"'
            f'{f" class={chr(34)}{cls}{chr(34)}" if cls else ""}>{escape(text)}</text>')


def _channel(words: dict, channel: str) -> str:
    return words.get(channel, channel)


def _describe(words: dict, point: Point) -> list[str]:
    """Two lines: the channels, then the window and where letters go."""
    first = " · ".join([_channel(words, point.channel)] + [words[a.when] for a in point.alternatives])
    second = words["window"].format(n=point.window)
    if point.destination:
        second += " · " + words["to"].format(where=point.destination)
    return [first, second]


def _left(x: float, text: str, size: int) -> float:
    """Where a label that starts near ``x`` starts so as to stay inside the drawing (a rough width)."""
    width = len(text) * size * 0.56
    return max(8.0, min(x, WIDTH - 8 - width))


def timeline_svg(policy: Policy, *, lang: str, library: str | None = None) -> str:
    """The SVG of ``policy``'s stages (``library``: with where its letters go), labels in ``lang``
    (fr, en or es; another language gets English)."""
    words = LABELS.get(lang, LABELS["en"])
    line = timeline(policy, library)
    first, last = line.first_day - 2, line.last_day + 2
    scale = (WIDTH - LEFT - RIGHT) / (last - first)

    def x(day: int) -> float:
        return LEFT + (day - first) * scale

    axis_y = TOP + ROW * len(line.points) + 10
    height = axis_y + (70 if line.restart else 48)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
           f'viewBox="0 0 {WIDTH} {height}" role="img" font-family="sans-serif">',
           f"<title>{escape(words['title'])}</title>",
           _text(LEFT, 24, words["title"] + (f" — {library}" if library else ""), size=16, weight="bold"),
           f'<line x1="{x(0):.1f}" y1="{TOP - 14}" x2="{x(0):.1f}" y2="{axis_y}" stroke="#888" '
           f'stroke-dasharray="4 3"/>',
           _text(x(0), TOP - 18, words["due"], size=11, anchor="middle")]
    for i, point in enumerate(line.points):
        y = TOP + ROW * i + 20
        colour = "#b03a2e" if point.channel == "letter" else "#1f618d"
        out.append(f'<g class="stage" data-stage="{escape(point.stage)}">')
        out.append(f'<rect x="{x(point.day):.1f}" y="{y - 5}" width="{max(x(point.last_day) - x(point.day), 2):.1f}" '
                   f'height="10" fill="{colour}" fill-opacity="0.25"/>')
        out.append(f'<circle cx="{x(point.day):.1f}" cy="{y}" r="6" fill="{colour}"/>')
        title = f"{point.stage} ({words['day'].format(day=point.day)})"
        lines = _describe(words, point)
        left = min(_left(x(point.day) + 10, title, 12), *(_left(x(point.day) + 10, t, 11) for t in lines))
        out.append(_text(left, y - 10, title, weight="bold"))
        for n, text in enumerate(lines):
            out.append(_text(left, y + 20 + 13 * n, text, size=11))
        out.append("</g>")
    out.append(f'<line x1="{LEFT}" y1="{axis_y}" x2="{WIDTH - RIGHT}" y2="{axis_y}" stroke="#333"/>')
    step = 7 if last - first <= 70 else 14
    for day in range((first // step) * step, last + 1, step):
        if day >= first:
            out.append(f'<line x1="{x(day):.1f}" y1="{axis_y - 4}" x2="{x(day):.1f}" y2="{axis_y + 4}" stroke="#333"/>')
            out.append(_text(x(day), axis_y + 18, f"{day:+d}" if day else "0", size=10, anchor="middle"))
    out.append(_text(WIDTH - RIGHT, axis_y + 34, words["days"], size=10, anchor="end"))
    if line.restart is not None:
        when = format_date(line.restart, format="long", locale=lang if lang in LABELS else "en")
        out.append(_text(LEFT, axis_y + 56, words["restart"].format(date=when), size=12, cls="restart"))
    out.append("</svg>")
    return "\n".join(out)
