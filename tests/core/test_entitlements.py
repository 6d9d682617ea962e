from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from entitle.core.catalog import Catalog, parse_catalog
from entitle.core.entitlements import (
    APP_STORE_MANAGEMENT_URL,
    EntitlementAnswer,
    Grant,
    SubscriptionRef,
    compute_entitlements,
    subscription_entitles,
)
from entitle.core.subscriptions import (
    ENTITLING_STATUSES,
    Environment,
    Store,
    SubscriptionState,
    SubscriptionStatus,
)

CATALOG = parse_catalog(
    """
[entitlements.pro]
[entitlements.storage]

[products.pro_monthly]
name = "Pro"
entitlements = ["pro"]
stripe = { lookup_key = "pro_monthly", unit_amount = 999, currency = "usd", interval = "month" }
app_store = { product_id = "com.example.app.pro.monthly" }

[products.bundle]
name = "Bundle"
entitlements = ["pro", "storage"]
app_store = { product_id = "com.example.app.bundle" }
""",
    source="test",
)
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
PUBLIC_URL = "https://api.example.com/"
ACCOUNT = uuid.UUID("00000000-0000-4000-8000-000000000001")


def make_subscription(**overrides: object) -> SubscriptionState:
    fields: dict[str, object] = {
        "store": Store.STRIPE,
        "store_subscription_id": "sub_1",
        "account_id": ACCOUNT,
        "product": "pro_monthly",
        "store_product_id": "price_1",
        "status": SubscriptionStatus.ACTIVE,
        "current_period_end": NOW + timedelta(days=10),
        "will_renew": True,
        "environment": Environment.PRODUCTION,
        "vendor_updated_at": NOW - timedelta(days=1),
    }
    fields.update(overrides)
    return SubscriptionState(**fields)  # type: ignore[arg-type]


def make_grant(**overrides: object) -> Grant:
    fields: dict[str, object] = {
        "id": "grant_1",
        "entitlement": "pro",
        "expires_at": NOW + timedelta(days=30),
    }
    fields.update(overrides)
    return Grant(**fields)  # type: ignore[arg-type]


def compute(
    subscriptions: list[SubscriptionState],
    grants: list[Grant],
    catalog: Catalog = CATALOG,
    now: datetime = NOW,
) -> dict[str, EntitlementAnswer]:
    return compute_entitlements(subscriptions, grants, catalog, now, public_url=PUBLIC_URL)


def test_nothing_grants_every_catalog_entitlement_inactive() -> None:
    answers = compute([], [])

    assert list(answers) == ["pro", "storage"]
    assert all(not a.active and a.store is None and a.management_url is None for a in answers.values())
    assert answers["pro"].to_json() == {
        "active": False,
        "source": None,
        "store": None,
        "product": None,
        "expires_at": None,
        "will_renew": False,
        "management_url": None,
        "duplicate_subscriptions": [],
    }


def test_active_stripe_subscription_reports_source_and_portal() -> None:
    answers = compute([make_subscription()], [])

    pro = answers["pro"]
    assert pro.active and pro.store is Store.STRIPE and pro.product == "pro_monthly"
    assert pro.will_renew and pro.expires_at == NOW + timedelta(days=10)
    assert pro.management_url == "https://api.example.com/v1/billing/stripe/portal"
    assert pro.source_id == "sub_1"
    assert pro.to_json()["expires_at"] == "2025-06-11T12:00:00Z"
    assert not answers["storage"].active


def test_app_store_bundle_grants_both_entitlements() -> None:
    sub = make_subscription(store=Store.APP_STORE, store_subscription_id="2000001", product="bundle")

    answers = compute([sub], [])

    assert answers["pro"].active and answers["storage"].active
    assert answers["storage"].management_url == APP_STORE_MANAGEMENT_URL


@pytest.mark.parametrize("status", sorted(set(SubscriptionStatus) - ENTITLING_STATUSES))
def test_non_entitling_status_never_entitles(status: SubscriptionStatus) -> None:
    assert not compute([make_subscription(status=status)], [])["pro"].active


def test_period_end_passed_no_longer_entitles() -> None:
    sub = make_subscription(current_period_end=NOW)

    assert not compute([sub], [])["pro"].active
    assert compute([sub], [], now=NOW - timedelta(seconds=1))["pro"].active


def test_grace_period_entitles_until_grace_ends() -> None:
    sub = make_subscription(
        status=SubscriptionStatus.IN_GRACE_PERIOD,
        current_period_end=NOW - timedelta(days=2),
        grace_period_ends_at=NOW + timedelta(days=3),
    )

    answer = compute([sub], [])["pro"]
    assert answer.active and answer.expires_at == NOW + timedelta(days=3)
    assert not compute([sub], [], now=NOW + timedelta(days=3))["pro"].active


def test_subscription_for_unknown_product_entitles_nothing() -> None:
    answers = compute(
        [make_subscription(product=None), make_subscription(store_subscription_id="s2", product="gone")], []
    )

    assert not any(a.active for a in answers.values())


def test_grant_entitles_only_between_start_and_expiry_unless_revoked() -> None:
    grant = make_grant(starts_at=NOW + timedelta(days=1))

    before = compute([], [grant])["pro"]
    assert not before.active and before.recheck_at == NOW + timedelta(days=1)
    during = compute([], [grant], now=NOW + timedelta(days=2))["pro"]
    assert during.active and during.store is Store.PROMOTIONAL and during.management_url is None
    assert during.product is None and not during.will_renew
    assert not compute([], [grant], now=grant.expires_at)["pro"].active
    revoked = replace(grant, revoked_at=NOW + timedelta(days=1, hours=1))
    assert not compute([], [revoked], now=NOW + timedelta(days=2))["pro"].active


def test_grant_for_entitlement_missing_from_catalog_is_ignored() -> None:
    assert list(compute([], [make_grant(entitlement="legacy")])) == ["pro", "storage"]


def test_renewing_paid_beats_lapsing_paid_beats_promotional() -> None:
    renewing = make_subscription(store_subscription_id="renewing", current_period_end=NOW + timedelta(days=1))
    lapsing = make_subscription(
        store=Store.APP_STORE,
        store_subscription_id="lapsing",
        status=SubscriptionStatus.CANCELED_AT_PERIOD_END,
        will_renew=False,
        current_period_end=NOW + timedelta(days=20),
    )
    grant = make_grant(expires_at=NOW + timedelta(days=300))

    assert compute([renewing, lapsing], [grant])["pro"].source_id == "renewing"
    assert compute([lapsing], [grant])["pro"].source_id == "lapsing"
    assert compute([], [grant])["pro"].source_id == "grant_1"


def test_latest_expiry_wins_among_equals() -> None:
    early = make_grant(id="early", expires_at=NOW + timedelta(days=2))
    late = make_grant(id="late", expires_at=NOW + timedelta(days=9))

    answer = compute([], [late, early])["pro"]
    assert answer.source_id == "late"
    # The answer must be looked at again when the first source ends, even though it is not the one shown.
    assert answer.recheck_at == NOW + timedelta(days=2)


def test_duplicate_paid_subscriptions_across_stores_are_reported() -> None:
    stripe = make_subscription()
    apple = make_subscription(store=Store.APP_STORE, store_subscription_id="2000001", product="bundle")

    answers = compute([apple, stripe], [])

    assert answers["pro"].duplicate_subscriptions == (
        SubscriptionRef(Store.APP_STORE, "2000001"),
        SubscriptionRef(Store.STRIPE, "sub_1"),
    )
    assert answers["pro"].to_json()["duplicate_subscriptions"] == [
        {"store": "app_store", "id": "2000001"},
        {"store": "stripe", "id": "sub_1"},
    ]
    # storage is granted only through the App Store: no duplicate there.
    assert answers["storage"].duplicate_subscriptions == ()


def test_two_paid_subscriptions_in_the_same_store_are_a_duplicate_too() -> None:
    # Pro paid twice on the web (a second subscription made in Stripe's dashboard, say): the person pays
    # for one thing twice, which the answer must say.
    answers = compute([make_subscription(), make_subscription(store_subscription_id="sub_2")], [])

    assert answers["pro"].duplicate_subscriptions == (
        SubscriptionRef(Store.STRIPE, "sub_1"),
        SubscriptionRef(Store.STRIPE, "sub_2"),
    )


def test_lapsed_subscription_does_not_count_as_duplicate() -> None:
    expired = make_subscription(
        store=Store.APP_STORE, store_subscription_id="1", status=SubscriptionStatus.EXPIRED
    )

    assert compute([make_subscription(), expired], [])["pro"].duplicate_subscriptions == ()


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError):
        compute([], [], now=NOW.replace(tzinfo=None))


# --- properties -------------------------------------------------------------------------------------

offsets = st.integers(min_value=-40, max_value=40).map(lambda d: NOW + timedelta(days=d))


@st.composite
def subscriptions(draw: st.DrawFn) -> list[SubscriptionState]:
    count = draw(st.integers(min_value=0, max_value=5))
    result = []
    for index in range(count):
        status = draw(st.sampled_from(list(SubscriptionStatus)))
        result.append(
            make_subscription(
                store=draw(st.sampled_from([Store.STRIPE, Store.APP_STORE])),
                store_subscription_id=f"s{index}",
                product=draw(st.sampled_from(["pro_monthly", "bundle", None])),
                status=status,
                current_period_end=draw(st.none() | offsets),
                will_renew=draw(st.booleans()),
                grace_period_ends_at=draw(st.none() | offsets),
            )
        )
    return result


@st.composite
def grants(draw: st.DrawFn) -> list[Grant]:
    count = draw(st.integers(min_value=0, max_value=4))
    return [
        Grant(
            id=f"g{index}",
            entitlement=draw(st.sampled_from(["pro", "storage"])),
            expires_at=draw(offsets),
            starts_at=draw(st.none() | offsets),
            revoked_at=draw(st.none() | offsets),
        )
        for index in range(count)
    ]


def grants_entitlement(source: SubscriptionState | Grant, key: str, now: datetime) -> bool:
    if isinstance(source, Grant):
        return source.entitlement == key and source.is_in_force(now)
    return key in CATALOG.entitlements_of(source.product) and subscription_entitles(source, now)


@given(subscriptions(), grants(), offsets)
def test_active_iff_some_source_grants(subs: list[SubscriptionState], gs: list[Grant], now: datetime) -> None:
    answers = compute(subs, gs, now=now)

    for key, answer in answers.items():
        assert answer.active == any(grants_entitlement(s, key, now) for s in [*subs, *gs])
        # Whatever is active must end after now, and an inactive answer reports no source.
        if answer.active:
            assert answer.expires_at is None or answer.expires_at > now
            assert answer.recheck_at is None or answer.recheck_at > now
        else:
            assert (answer.store, answer.product, answer.management_url, answer.source_id) == (None,) * 4


@given(subscriptions(), grants(), offsets, st.randoms(use_true_random=False))
def test_answer_is_invariant_under_input_order(
    subs: list[SubscriptionState], gs: list[Grant], now: datetime, rnd: object
) -> None:
    shuffled_subs, shuffled_grants = list(subs), list(gs)
    rnd.shuffle(shuffled_subs)  # type: ignore[attr-defined]
    rnd.shuffle(shuffled_grants)  # type: ignore[attr-defined]

    assert compute(subs, gs, now=now) == compute(shuffled_subs, shuffled_grants, now=now)


@given(subscriptions(), grants(), offsets)
def test_reported_source_follows_the_preference_rules(
    subs: list[SubscriptionState], gs: list[Grant], now: datetime
) -> None:
    answers = compute(subs, gs, now=now)

    for key, answer in answers.items():
        granting_subs = [s for s in subs if grants_entitlement(s, key, now)]
        if any(s.will_renew for s in granting_subs):
            assert answer.store is not Store.PROMOTIONAL and answer.will_renew
        elif granting_subs:
            assert answer.store is not Store.PROMOTIONAL and not answer.will_renew
        elif answer.active:
            assert answer.store is Store.PROMOTIONAL
            best_end = max(g.expires_at for g in gs if grants_entitlement(g, key, now))
            # A revoked grant ends at its revocation, never later than its expiry.
            assert answer.expires_at is not None and answer.expires_at <= best_end


@given(subscriptions(), grants(), offsets)
def test_expired_or_revoked_grants_and_dead_statuses_never_entitle(
    subs: list[SubscriptionState], gs: list[Grant], now: datetime
) -> None:
    living_subs = [s for s in subs if s.status in ENTITLING_STATUSES]
    living_grants = [g for g in gs if g.expires_at > now and (g.revoked_at is None or g.revoked_at > now)]

    assert compute(subs, gs, now=now) == compute(living_subs, living_grants, now=now)


@given(subscriptions(), grants(), offsets)
def test_duplicates_reported_iff_two_paid_subscriptions_grant_it(
    subs: list[SubscriptionState], gs: list[Grant], now: datetime
) -> None:
    for key, answer in compute(subs, gs, now=now).items():
        paying = {(s.store, s.store_subscription_id) for s in subs if grants_entitlement(s, key, now)}
        assert bool(answer.duplicate_subscriptions) == (len(paying) > 1)
        assert list(answer.duplicate_subscriptions) == sorted(answer.duplicate_subscriptions)


@given(subscriptions(), grants(), offsets)
def test_answer_holds_until_recheck_at(subs: list[SubscriptionState], gs: list[Grant], now: datetime) -> None:
    answers = compute(subs, gs, now=now)

    for key, answer in answers.items():
        later = answer.recheck_at - timedelta(seconds=1) if answer.recheck_at else now + timedelta(days=400)
        if later > now:
            assert compute(subs, gs, now=later)[key] == answer
