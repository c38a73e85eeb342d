"""A room view with a year of items, for rendering tests and the web benchmark."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from civicbot.core.public import (
    PublicConsultation,
    PublicCount,
    PublicDecision,
    PublicMeeting,
    PublicPost,
    PublicUpdate,
)
from civicbot.web.site import RoomView

START = datetime(2026, 1, 5, 18, 0, tzinfo=UTC)


def busy_view(decisions: int = 500, consultations: int = 100, meetings: int = 200) -> RoomView:
    view = RoomView(
        "!busy:example.org",
        "slug",
        "Busy <Room>",
        "A year of it",
        "https://matrix.to/#/!busy:example.org?via=example.org",
        via="example.org",
        zone="Europe/London",
    )
    for n in range(decisions):
        at = START + timedelta(hours=17 * n)
        counts = (PublicCount("Saturday", 12, 60, True), PublicCount("Sunday", 8, 40))
        view.decisions.append(
            PublicDecision(
                f"P-{n + 1}",
                f"Question {n} & <more>?",
                at,
                "Winner: Saturday.",
                "20 people voted.",
                counts,
                f"Outcome {n}",
                at,
                f"$p{n}",
            )
        )
    view.decisions.sort(key=lambda d: d.decided_at, reverse=True)
    for n in range(consultations):
        at = START + timedelta(days=3 * n)
        update = PublicUpdate(
            "response", "", f"We did {n}", "@council:example.org", at + timedelta(days=10)
        )
        view.consultations.append(
            PublicConsultation(
                f"C-{n + 1}",
                f"Consultation {n}",
                "What do you think?",
                "responded",
                at,
                14,
                ("Which first? — Benches 9, Lights 5",),
                "",
                (update,),
                f"$c{n}",
            )
        )
    for n in range(meetings):
        at = START + timedelta(days=400 + n)
        view.meetings.append(
            PublicMeeting(
                f"M-{n + 1}",
                f"Meeting {n}",
                (at,),
                60,
                "Europe/London",
                "Church Hall",
                "",
                f"$m{n}",
            )
        )
    for n in range(40):
        view.offers.append(
            PublicPost(
                f"O-{n + 1}", "offer", f"Offer {n}", "ongoing", "@bob:example.org", START, f"$o{n}"
            )
        )
        view.needs.append(
            PublicPost(f"N-{n + 1}", "need", f"Need {n}", "this week", None, START, f"$n{n}")
        )
    view.names = {"@council:example.org": "Councillor", "@bob:example.org": "Bob"}
    return view
