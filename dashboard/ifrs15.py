"""Revenue of loyalty points under IFRS 15 / ASC 606, as pure functions (docs/liability.md).

Points given with a sale are a *material right*: a separate performance obligation. The
sale's price is split between the goods and the points by their relative stand-alone selling
prices (SSP); the points' SSP is their value per point times the points expected to be
redeemed. The part allocated to the points is a contract liability (deferred revenue), turned
into revenue as points are redeemed, in the proportion

    points redeemed so far / points expected to be redeemed in total

and the expected total is an estimate: when it changes, the revenue recognised to date is
recomputed with the new estimate and the difference lands in the current period (a cumulative
catch-up), earlier periods are not restated.

Amounts are `Decimal` in one currency; nothing here reads the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")


def _round(amount: Decimal, quantum: Decimal) -> Decimal:
    """`amount` rounded half-up to a multiple of `quantum` (0.01 cents, 1 units, 1000 thousands)."""
    return (amount / quantum).to_integral_value(rounding=ROUND_HALF_UP) * quantum


def points_ssp(points: int | Decimal, value_per_point: Decimal, expected_redemption_rate: Decimal) -> Decimal:
    """The stand-alone selling price of `points`: their value adjusted for the share expected
    to be redeemed (10,000 points worth 1 each, 97% expected: 9,700)."""
    return Decimal(points) * Decimal(value_per_point) * Decimal(expected_redemption_rate)


@dataclass(frozen=True)
class Allocation:
    goods: Decimal
    points: Decimal


def allocate(price: Decimal, goods_ssp: Decimal, points_ssp: Decimal, *, quantum: Decimal = CENT) -> Allocation:
    """Split a transaction `price` between goods and points by relative stand-alone selling price.

    The points' share is rounded to `quantum`; the goods get the rest, so the two always add up
    to the price. 100,000 of sales, goods SSP 100,000, points SSP 9,700:
    points = 100,000 x 9,700 / 109,700 = 8,842.30 (8,842 to the unit, 9,000 to the thousand,
    as the KPMG handbook presents it); goods = 91,157.70 (91,158 / 91,000).
    """
    price, goods_ssp, points_ssp = Decimal(price), Decimal(goods_ssp), Decimal(points_ssp)
    if price < 0 or goods_ssp < 0 or points_ssp < 0:
        raise ValueError("price and stand-alone selling prices must not be negative")
    total = goods_ssp + points_ssp
    if total == 0:
        return Allocation(goods=price, points=Decimal(0))
    points = _round(price * points_ssp / total, quantum)
    return Allocation(goods=price - points, points=points)


def recognised_to_date(
    allocated: Decimal, redeemed: int | Decimal, expected_total: int | Decimal, *, quantum: Decimal = CENT
) -> Decimal:
    """Revenue recognised on the points up to now: the allocated amount times the share of the
    expected redemptions that happened (capped at the whole allocation). With nothing expected
    to be redeemed (every point will lapse) the whole allocation is revenue."""
    allocated, redeemed, expected_total = Decimal(allocated), Decimal(redeemed), Decimal(expected_total)
    if redeemed < 0 or expected_total < 0:
        raise ValueError("redemptions must not be negative")
    if expected_total == 0 or redeemed >= expected_total:
        return _round(allocated, quantum)
    return _round(allocated * redeemed / expected_total, quantum)


def revenue_for_period(
    allocated: Decimal,
    redeemed_to_date: int | Decimal,
    expected_total: int | Decimal,
    recognised_before: Decimal,
    *,
    quantum: Decimal = CENT,
) -> Decimal:
    """Revenue of the current period: recognised to date with the current estimate, minus what
    earlier periods recognised (with their estimates). The cumulative catch-up of a revised
    estimate falls in this period.

    KPMG's example (allocation 9,000, whole units): year 2, 4,500 of 9,700 expected redeemed:
    9,000 x 4,500 / 9,700 = 4,175. Year 3, 8,500 redeemed of a revised 9,900:
    9,000 x 8,500 / 9,900 - 4,175 = 3,552 (with 9,200: 4,140).
    """
    to_date = recognised_to_date(allocated, redeemed_to_date, expected_total, quantum=quantum)
    return to_date - Decimal(recognised_before)


def expected_total_redemptions(redeemed: int, outstanding: int, expected_redemption_rate: Decimal) -> Decimal:
    """The points expected to be redeemed in total, estimated at a reporting date: those already
    redeemed plus the expected share of those still outstanding. Points that expired or were
    taken back drop out, so the estimate is revised as the portfolio settles."""
    return Decimal(redeemed) + Decimal(outstanding) * Decimal(expected_redemption_rate)
