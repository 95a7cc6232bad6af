"""IFRS 15 arithmetic of points (dashboard/ifrs15.py), checked against KPMG's handbook example
(Revenue, example 10A/10B) as issue 13 states it."""

from decimal import Decimal

import pytest

from dashboard import ifrs15

UNIT = Decimal("1")


def test_kpmg_points_ssp_is_the_value_of_the_points_expected_to_be_redeemed():
    assert ifrs15.points_ssp(10_000, Decimal("1"), Decimal("0.97")) == Decimal("9700")


def test_kpmg_allocation_by_relative_stand_alone_selling_price():
    exact = ifrs15.allocate(Decimal("100000"), Decimal("100000"), Decimal("9700"))
    assert exact.points == Decimal("8842.30")  # 100,000 x 9,700 / 109,700
    assert exact.goods == Decimal("91157.70")
    to_unit = ifrs15.allocate(Decimal("100000"), Decimal("100000"), Decimal("9700"), quantum=UNIT)
    assert (to_unit.goods, to_unit.points) == (Decimal("91158"), Decimal("8842"))
    # The handbook presents the split rounded to the thousand.
    handbook = ifrs15.allocate(Decimal("100000"), Decimal("100000"), Decimal("9700"), quantum=Decimal("1000"))
    assert (handbook.goods, handbook.points) == (Decimal("91000"), Decimal("9000"))


def test_kpmg_year_2_recognises_4175_for_4500_points_redeemed():
    revenue = ifrs15.revenue_for_period(Decimal("9000"), 4_500, 9_700, Decimal("0"), quantum=UNIT)
    assert revenue == Decimal("4175")


@pytest.mark.parametrize(("revised_total", "expected"), [(9_900, Decimal("3552")), (9_200, Decimal("4140"))])
def test_kpmg_year_3_catches_up_with_the_revised_estimate(revised_total, expected):
    year_2 = ifrs15.recognised_to_date(Decimal("9000"), 4_500, 9_700, quantum=UNIT)
    revenue = ifrs15.revenue_for_period(Decimal("9000"), 4_500 + 4_000, revised_total, year_2, quantum=UNIT)
    assert revenue == expected


def test_recognition_never_exceeds_the_allocation_and_lapsed_points_release_it():
    assert ifrs15.recognised_to_date(Decimal("9000"), 12_000, 9_700) == Decimal("9000.00")
    assert ifrs15.recognised_to_date(Decimal("9000"), 0, 0) == Decimal("9000.00")
    # Expected total re-estimated as the portfolio settles: everything redeemed or lapsed.
    assert ifrs15.expected_total_redemptions(8_500, 0, Decimal("0.97")) == Decimal("8500")
    assert ifrs15.expected_total_redemptions(4_500, 5_500, Decimal("0.9")) == Decimal("9450.0")


def test_allocation_always_adds_up_and_refuses_negative_prices():
    split = ifrs15.allocate(Decimal("19.99"), Decimal("19.99"), Decimal("0.17"))
    assert split.goods + split.points == Decimal("19.99")
    assert ifrs15.allocate(Decimal("10"), Decimal("0"), Decimal("0")).points == 0
    with pytest.raises(ValueError, match="negative"):
        ifrs15.allocate(Decimal("-1"), Decimal("1"), Decimal("1"))
