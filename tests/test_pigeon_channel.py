"""Adding a channel is one module and one registration: a carrier pigeon, added by this test.

The module below is all a new channel needs: a ``BaseChannel`` subclass, the model of its
settings (``delivery: {channels: {pigeon: {...}}}``) and one ``REGISTRY.register`` naming how the
engine routes to it (a ``ChannelSpec``: plain data). A policy whose stage says ``channel: pigeon``
then passes ``rappel lint``, a day is planned and run, and the pigeon gets the letters; nothing
under engine/ knows about pigeons.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, Field
from typer.testing import CliRunner

from adapters.channels.base import BaseChannel, Delivery
from adapters.channels.registry import REGISTRY, Registration, Site as ChannelSite
from cli import app
from engine.channels import ChannelSpec
from engine.decide import Notice
from engine.yamlsource import InputError
from service import rules as rules_

try:
    from tests import delivery_site
except ModuleNotFoundError:  # tests/ on sys.path rather than the project root
    import delivery_site

ROOT = Path(__file__).resolve().parent.parent
RUN = delivery_site.RUN           # Monday 23 November 2026


# -- the new channel: one module's worth ----------------------------------------------------------

class PigeonSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    loft: str = Field(min_length=1, description="Where the birds take off")
    birds: int = Field(default=3, ge=1, description="Birds available each day")


class PigeonChannel(BaseChannel):
    """Letters tied to a pigeon's leg: one per patron and library, to the patron's postal address."""

    name = "pigeon"
    carries = ("letter",)

    def __init__(self, settings: PigeonSettings):
        self.settings = settings
        self.flown: list[tuple[Notice, bytes, str]] = []

    @property
    def description(self) -> str:
        return f"pigeon (from the {self.settings.loft} loft)"

    def send_letter(self, notice: Notice, pdf: bytes, filename: str) -> Delivery:
        if len(self.flown) >= self.settings.birds:
            return Delivery.failed("no bird left today")             # transient: tomorrow's birds
        self.flown.append((notice, pdf, filename))
        return Delivery.sent(f"pigeon:{self.settings.loft}/{len(self.flown)}", f"flown to {notice.recipient}")


PIGEON = ChannelSpec("pigeon", contact="postal", renders="letter", per_library=True)
LOFTS: list[PigeonChannel] = []    # every pigeon channel built, for the test to look at


def _build(settings: PigeonSettings, site: ChannelSite) -> PigeonChannel:
    channel = PigeonChannel(settings)
    LOFTS.append(channel)
    return channel


@pytest.fixture(autouse=True)
def pigeon():
    """The one registration line, undone after each test (the registry is process-wide)."""
    registration = REGISTRY.register(Registration("pigeon", PIGEON, "letters by carrier pigeon", _build,
                                                  settings=PigeonSettings))
    LOFTS.clear()
    yield registration
    REGISTRY.unregister("pigeon")


# -- a policy that uses it ------------------------------------------------------------------------

BY_PIGEON = "{{id: second_reminder, offset_days: 21, channel: pigeon}}"
SETTINGS = '\ndelivery:\n  channels:\n    pigeon: {loft: "Tour Pey-Berland", birds: 5}\n'


@pytest.fixture
def site(tmp_path, monkeypatch):
    """delivery_site's installation with the second reminder sent by pigeon."""
    policy = delivery_site.POLICY.replace("{{id: second_reminder, offset_days: 21, channel: email}}", BY_PIGEON)
    assert BY_PIGEON in policy
    monkeypatch.setattr(delivery_site, "POLICY", policy)
    s = delivery_site.Site(tmp_path, SETTINGS)
    yield s
    s.close()


def rappel(*args) -> object:
    return CliRunner().invoke(app, [str(a) for a in args])


def test_a_policy_with_a_pigeon_stage_passes_lint(site):
    result = rappel("lint", "--rules", site.rules, "--outbox", site.outbox)
    assert result.exit_code == 0, result.output
    assert "delivery: letters by carrier pigeon: pigeon (from the Tour Pey-Berland loft)" in result.output
    assert [s.channel for s in site.policy.stages] == ["email", "email", "pigeon", "letter"]


def test_a_day_is_planned_and_run_and_the_pigeon_gets_the_letters(site):
    site.patron("P1", "zoe.lefevre@etu.example", first="Zoé", last="Lefèvre")
    site.loan("L1", "P1", "2026-11-02", "SCI", "Chimie organique")        # 21 days late on 23 November
    site.loan("L2", "P1", "2026-11-02", "DROIT", "Droit des obligations")
    site.patron("P2", "p2@etu.example", address=False)
    site.loan("M1", "P2", "2026-11-02", "SCI")                             # no postal address: no pigeon

    result = site.run(RUN)

    zoe = "Zoé Lefèvre, 12 rue des Écoles, 33000 Bordeaux, France"       # her postal address, where it flies
    assert [(n.stage, n.channel, n.patron_id, n.library, n.recipient, n.destination) for n in result.plan.notices] == [
        ("second_reminder", "pigeon", "P1", "DROIT", zoe, zoe),
        ("second_reminder", "pigeon", "P1", "SCI", zoe, zoe),
    ]
    assert site.ledger()[("M1", "second_reminder")][::2] == ("cancelled", "no postal address to send a pigeon to")
    [loft] = LOFTS
    assert [(n.library, n.loan_ids, name) for n, _, name in loft.flown] == [
        ("DROIT", ("L2",), "2026-11-23_second_reminder_P1_DROIT.pdf"),
        ("SCI", ("L1",), "2026-11-23_second_reminder_P1_SCI.pdf")]
    assert all(pdf.startswith(b"%PDF") for _, pdf, _ in loft.flown)
    assert sorted(o.status for o in result.outcomes) == ["sent", "sent"]
    assert {site.notice(n.key).reference for n in result.plan.notices} == {"pigeon:Tour Pey-Berland/1",
                                                                          "pigeon:Tour Pey-Berland/2"}
    assert site.outbox_files() == []                                      # nothing went to the outbox


def test_a_misspelt_channel_is_an_input_error_with_file_line_and_key(site):
    path = site.rules / "reminders.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("channel: pigeon", "channel: pigoen"), encoding="utf-8")
    line = next(i for i, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if "pigoen" in text)
    with pytest.raises(InputError) as err:
        rules_.load_policy(site.rules)
    assert [str(p) for p in err.value.problems] == [
        f"{path}:{line}: stages[2].channel: unknown channel 'pigoen' (known: email, letter, sms, webhook, pigeon)"]
    result = rappel("lint", "--rules", site.rules)
    assert result.exit_code == 2 and "unknown channel 'pigoen'" in result.output + (result.stderr or "")


@pytest.mark.parametrize("settings, where, says", [
    ("{birds: 5}",                          "delivery.channels.pigeon.loft",   "required key is missing"),
    ('{loft: "Tour Pey-Berland", birds: 0}', "delivery.channels.pigeon.birds", "greater than or equal to 1"),
    ('{loft: "Tour Pey-Berland", wings: 2}', "delivery.channels.pigeon.wings", "unknown key"),
])
def test_the_pigeon_s_own_model_checks_its_settings_at_lint(site, settings, where, says):
    path = site.rules / "reminders.yaml"
    text = path.read_text(encoding="utf-8").replace('{loft: "Tour Pey-Berland", birds: 5}', settings)
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError) as err:
        rules_.load_policy(site.rules)
    [problem] = err.value.problems
    assert (problem.where, problem.line) == (where, text.splitlines().index(f"    pigeon: {settings}") + 1)
    assert says in problem.message


@pytest.mark.parametrize("registered, settings, says", [
    (False, "pigeon: {loft: x}", "delivery.channels.pigeon: unknown channel 'pigeon' (known: email, letter, sms, "
                                         "webhook)"),
    (True,  "letter: {}",        "delivery.channels.letter: the letter channel takes no settings here; they are "
                                 "delivery.print and delivery.mailbox"),
])
def test_settings_for_a_channel_that_takes_none_there_are_an_error(site, registered, settings, says):
    if not registered:
        REGISTRY.unregister("pigeon")
    path = site.rules / "reminders.yaml"
    text = path.read_text(encoding="utf-8").replace("channel: pigeon", "channel: email")
    text = text.replace('pigeon: {loft: "Tour Pey-Berland", birds: 5}', settings)
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError) as err:
        rules_.load_policy(site.rules)
    line = text.splitlines().index(f"    {settings}") + 1
    assert [str(p) for p in err.value.problems] == [f"{path}:{line}: {says}"]


def test_nothing_under_engine_mentions_pigeons():
    for path in sorted((ROOT / "engine").rglob("*.py")):
        assert "pigeon" not in path.read_text(encoding="utf-8").lower(), path
