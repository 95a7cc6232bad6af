"""Card numbers (random, prefixed, Luhn-checked) and claim PINs (keyed HMAC). No database."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stdnum import luhn

from cards import numbers

# What a program allows (1-8 digit prefix, 12-19 digits) with at least 6 random digits.
prefixes = st.text(alphabet="0123456789", min_size=1, max_size=8)
schemes = prefixes.flatmap(lambda p: st.tuples(st.just(p), st.integers(max(12, len(p) + 7), 19)))


@settings(deadline=None)  # no test depends on the machine's speed
@given(scheme=schemes)
def test_a_random_number_is_well_formed_with_the_prefix_and_length(scheme):
    prefix, length = scheme
    number = numbers.random_number(prefix, length)
    assert number.startswith(prefix)
    assert len(number) == length
    assert numbers.is_well_formed(number)


@settings(deadline=None)  # no test depends on the machine's speed
@given(scheme=schemes, data=st.data())
def test_changing_any_one_digit_is_detected(scheme, data):
    prefix, length = scheme
    number = numbers.random_number(prefix, length)
    position = data.draw(st.integers(min_value=0, max_value=length - 1), label="position")
    digit = data.draw(st.sampled_from([d for d in "0123456789" if d != number[position]]), label="digit")
    typo = number[:position] + digit + number[position + 1 :]
    assert not numbers.is_well_formed(typo)


@settings(deadline=None)  # no test depends on the machine's speed
@given(scheme=schemes, count=st.integers(min_value=0, max_value=50))
def test_random_numbers_are_well_formed_with_the_prefix_and_length(scheme, count):
    prefix, length = scheme
    batch = numbers.random_numbers(prefix, length, count)
    assert len(batch) == count
    assert all(n.startswith(prefix) and len(n) == length and numbers.is_well_formed(n) for n in batch)


@settings(deadline=None)  # no test depends on the machine's speed
@given(body=st.text(alphabet="0123456789", min_size=7, max_size=31))
def test_the_fast_check_digit_is_stdnums_luhn(body):
    digit = numbers.luhn_check_digit(body)
    assert digit == luhn.calc_check_digit(body)
    assert luhn.is_valid(body + digit)


def test_numbers_are_not_sequential():
    drawn = {numbers.random_number("7", 16) for _ in range(1000)}
    assert len(drawn) == 1000  # 10^14 bodies: a repeat here would mean a broken generator


@pytest.mark.parametrize(("prefix", "length"), [("1234567", 12), ("12345678", 14)])
def test_too_few_random_digits_are_refused(prefix, length):
    with pytest.raises(ValueError, match="too short"):
        numbers.random_number(prefix, length)


@pytest.mark.parametrize("typed", ["7000 0000 0000 0000", "7000-0000-0000-0000", "7000\t0000 0000-0000"])
def test_normalize_drops_spaces_and_dashes(typed):
    assert numbers.normalize(typed) == "7000000000000000"


@settings(deadline=None)  # no test depends on the machine's speed
@given(number=st.builds(numbers.random_number, st.just("7"), st.just(16)))
def test_pin_for_is_stable_and_six_digits(number):
    pin = numbers.pin_for(number)
    assert pin == numbers.pin_for(number)
    assert len(pin) == 6
    assert pin.isdigit()
    assert numbers.pin_matches(number, pin)
    assert numbers.pin_matches(number, f"{pin[:3]} {pin[3:]}")


def test_pin_depends_on_the_secret(settings):
    number = "7000000000000002"
    settings.CARD_PIN_SECRET = "one secret"
    before = numbers.pin_for(number)
    settings.CARD_PIN_SECRET = "another secret"
    assert numbers.pin_for(number) != before


def test_a_wrong_pin_does_not_match():
    number = numbers.random_number("7", 16)
    pin = numbers.pin_for(number)
    wrong = str((int(pin) + 1) % 10**6).zfill(6)
    assert not numbers.pin_matches(number, wrong)
    assert not numbers.pin_matches(number, "")
