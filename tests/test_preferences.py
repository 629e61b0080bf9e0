"""A patron's own say (issue 12, item 1): the channels they prefer, in order, and opt-outs.

Policy: preferences.optional lists the stages a patron may opt out of (the courtesy notice),
preferences.mandatory those sent on their own channel whatever a patron prefers (the letter); a
stage's channels: lists the channels it may go out on. Tables of (patron, stage, date) → notice."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from engine import decide, delivery
from engine.channels import EMAIL, LETTER, ChannelSpec
from engine.decide import plan_day
from engine.facts import Candidate, Status
from engine.policy import parse_policy
from engine.preferences import channels_problem, opt_out_problem, route_order
from engine.yamlsource import InputError

try:
    from tests.engine_cases import REMINDERS, d, loan, patron, reminders_text
except ModuleNotFoundError:  # tests/ on sys.path rather than the project root
    from engine_cases import REMINDERS, d, loan, patron, reminders_text

SMS = ChannelSpec("sms", contact="phone", renders="email")    # the engine needs only these facts of a channel
CHANNELS = {"email": EMAIL, "letter": LETTER, "sms": SMS}
FIRST = "  - {id: first_reminder, offset_days: 7, channel: email}"


def policy(*replacements: tuple[str, str]):
    text = reminders_text()
    for old, new in replacements:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return parse_policy(text, "variant.yaml", CHANNELS)


SHIPPED = policy()
BY_SMS_TOO = policy((FIRST, "  - {id: first_reminder, offset_days: 7, channel: email, channels: [email, sms, letter]}"))


def who(channels: str = "", opt_out: str = "", *, email: str | None = None, phone: str = "+33612345678",
        postal: bool = True):
    p = dataclasses.replace(patron("P1", email=email), channels=channels, opt_out=opt_out, phone=phone)
    return p if postal else dataclasses.replace(p, address_line1="", postal_code="", city="")


def notices_on(pol, person, due: str, on: str):
    """The day's notices (channel, stage) and the reasons of what is not sent, for one loan of ``person``."""
    item = loan(due)
    plan = plan_day(pol, [Candidate.of(item, person)], {person.patron_id: person}, d(on), CHANNELS)
    sent = [(n.channel, n.stage) for n in plan.notices]
    return sent, [x.reason for x in plan.decisions if x.status != Status.PENDING]


# -- opting out ---------------------------------------------------------------------------------

@pytest.mark.parametrize("opt_out, due, on, sent", [
    # patron's opt_out   due date      run date      what goes out
    ("",                 "2026-11-26", "2026-11-23", [("email", "courtesy")]),
    ("courtesy",         "2026-11-26", "2026-11-23", []),                         # opted out of the courtesy
    ("all",              "2026-11-26", "2026-11-23", []),                         # every optional stage
    ("courtesy",         "2026-11-16", "2026-11-23", [("email", "first_reminder")]),   # reminders still go
    ("all",              "2026-11-02", "2026-11-23", [("email", "second_reminder")]),
    ("all",              "2026-10-19", "2026-11-23", [("letter", "letter")]),     # the letter is mandatory
])
def test_an_opt_out_stops_the_optional_stages_only(opt_out, due, on, sent):
    assert notices_on(SHIPPED, who(opt_out=opt_out), due, on)[0] == sent


def test_an_opt_out_is_a_condition_of_the_stage_explained_like_the_others():
    from engine.reference import checks
    cand = Candidate.of(loan("2026-11-26"), who(opt_out="courtesy"))
    [check] = [c for c in checks(SHIPPED, 0, cand, d("2026-11-23")) if c.name == "opt_out"]
    assert not check.ok and check.detail == "the patron opted out of courtesy (an optional stage)"
    # a stage the policy does not mark optional has no such condition at all
    assert not [c for c in checks(SHIPPED, 1, cand, d("2026-11-30")) if c.name == "opt_out"]
    assert [c.ok for c in checks(SHIPPED, 0, Candidate.of(loan("2026-11-26"), who()), d("2026-11-23"))
            if c.name == "opt_out"] == [True]


def test_an_opt_out_counts_only_while_the_policy_marks_the_stage_optional():
    nothing_optional = policy(("  optional: [courtesy]\n", "  optional: []\n"))
    assert notices_on(nothing_optional, who(opt_out="courtesy"), "2026-11-26", "2026-11-23")[0] == \
        [("email", "courtesy")]


# -- the order of channels ----------------------------------------------------------------------

@pytest.mark.parametrize("channels, email, phone, postal, sent, why", [
    # patron's order   email   phone            postal  first_reminder goes by   and why not an earlier one
    ("",               None,   "+33612345678",  True,   "email",  ""),                # the policy's order
    ("sms email",      None,   "+33612345678",  True,   "sms",    ""),
    ("sms email",      None,   "",              True,   "email",  "no phone number for sms: email instead"),
    ("letter",         None,   "+33612345678",  True,   "letter", ""),
    ("sms",            "",     "",              True,   "letter", "no phone number for sms; no email address: letter instead"),
    ("sms letter",     "",     "",              False,  None,     "no usable channel: no phone number for sms; no postal "
                                                                  "address for a letter; no email address"),
    ("webhook email",  None,   "",              True,   "email",  ""),                # not among the stage's: ignored
])
def test_a_stage_with_several_channels_goes_on_the_first_the_patron_prefers_and_can_be_reached_on(
        channels, email, phone, postal, sent, why):
    person = who(channels, email=email, phone=phone, postal=postal)
    channel, reason = decide.route(BY_SMS_TOO, 1, person, CHANNELS)
    assert (channel, reason) == (sent, why)


def test_a_patron_preference_does_not_move_a_stage_with_one_channel_nor_a_mandatory_one():
    person = who("sms letter")
    assert notices_on(BY_SMS_TOO, person, "2026-11-16", "2026-11-23")[0] == [("sms", "first_reminder")]
    assert notices_on(BY_SMS_TOO, person, "2026-11-02", "2026-11-23")[0] == [("email", "second_reminder")]
    mandatory_email = policy(("  mandatory: [letter]\n", "  mandatory: [letter, second_reminder]\n"))
    assert route_order(mandatory_email, mandatory_email.stages[2], person) == ("email",)
    assert route_order(BY_SMS_TOO, BY_SMS_TOO.stages[1], person) == ("sms", "letter", "email")


def test_a_patron_with_no_usable_channel_is_reported_not_dropped():
    sent, reasons = notices_on(BY_SMS_TOO, who("sms", email="", phone="", postal=False), "2026-11-16", "2026-11-23")
    assert sent == [] and reasons == ["no usable channel: no phone number for sms; no email address; "
                                      "no postal address for a letter"]


# -- a channel refusing for good: the next one in the patron's order ----------------------------

@pytest.mark.parametrize("pol, channels, refused, instead", [
    (BY_SMS_TOO, "sms email letter", "sms",   [("email", None)]),
    (BY_SMS_TOO, "sms letter email", "sms",   [("letter", "SCI")]),
    (BY_SMS_TOO, "sms email letter", "email", [("letter", "SCI")]),
    (BY_SMS_TOO, "",                 "email", [("sms", None)]),        # the policy's order: email, sms, letter
    (SHIPPED,    "sms",              "email", [("letter", "SCI")]),    # one channel: fallback.email: letter
])
def test_a_notice_refused_for_good_falls_back_in_the_patron_order(pol, channels, refused, instead):
    person = who(channels)
    item = loan("2026-11-16")
    notice = decide.make_notice(pol, CHANNELS[refused], d("2026-11-23"), "first_reminder", person,
                                "SCI" if refused == "letter" else None, [item])
    replaced = delivery.fallback(pol, notice, person, [item], CHANNELS)
    assert [(n.channel, n.library) for n in replaced.letters] == instead
    assert all(n.loan_ids == ("L1",) and n.status == Status.PENDING for n in replaced.letters)


# -- what the policy and the values may say -----------------------------------------------------

@pytest.mark.parametrize("old, new, says", [
    ("  optional: [courtesy]\n", "  optional: [curtesy]\n", "preferences.optional: 'curtesy' is not a stage"),
    ("  mandatory: [letter]\n", "  mandatory: [letter, courtesy]\n", "courtesy is optional or mandatory, not both"),
    (FIRST, "  - {id: first_reminder, offset_days: 7, channel: email, channels: [sms]}",
     "channels: must include the stage's channel (email)"),
    (FIRST, "  - {id: first_reminder, offset_days: 7, channel: email, channels: [email, pigeon]}",
     "unknown channel 'pigeon'"),
])
def test_a_policy_that_cannot_be_kept_is_refused_with_its_line(old, new, says):
    text = reminders_text().replace(old, new)
    with pytest.raises(InputError) as info:
        parse_policy(text, str(REMINDERS), CHANNELS)
    assert says in str(info.value), str(info.value)
    assert f"{REMINDERS}:" in str(info.value)


@pytest.mark.parametrize("value, problem", [
    ("sms email", None),
    ("sms, email | letter", None),
    ("SMS", "channels: 'SMS' is not a channel name (the channels in order, e.g. \"sms email\")"),
    ("emial", "channels: 'emial' is not a channel rappel knows (email, letter, sms)"),
])
def test_a_patron_channels_value(value, problem):
    assert channels_problem(value, CHANNELS) == problem


@pytest.mark.parametrize("value, problem", [
    ("courtesy", None),
    ("all", None),
    ("first_reminder", "opt_out: first_reminder is not optional: patrons cannot opt out of it "
                       "(optional stages: courtesy, or all)"),
    ("curtesy", "opt_out: 'curtesy' is not a stage of the policy (optional stages: courtesy, or all)"),
])
def test_a_patron_opt_out_value(value, problem):
    assert opt_out_problem(value, SHIPPED) == problem


def test_the_shipped_policy_marks_the_courtesy_optional_and_the_letter_mandatory():
    assert SHIPPED.preferences.optional == ["courtesy"] and SHIPPED.preferences.mandatory == ["letter"]
    assert Path(REMINDERS).read_text(encoding="utf-8").count("preferences:") == 1
