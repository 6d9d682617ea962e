"""The admin reports' SVG charts: well-formed, accessible, escaped, themable, and drawn to scale."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import date, timedelta

import pytest

from entitle.web.charts import daily_bars, nice_ticks, stacked_bars

SVG = "{http://www.w3.org/2000/svg}"
DAYS = [date(2026, 3, 1) + timedelta(days=n) for n in range(5)]


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def accessible_name(root: ET.Element) -> str:
    title_id, desc_id = root.attrib["aria-labelledby"].split()
    title = root.find(f"{SVG}title")
    desc = root.find(f"{SVG}desc")
    assert title is not None and desc is not None
    assert (title.attrib["id"], desc.attrib["id"]) == (title_id, desc_id)
    return title.text or ""


def test_daily_bars_are_valid_accessible_svg_that_scales_with_its_container() -> None:
    root = parse(daily_bars(list(zip(DAYS, [1, 4, 0, 2, 3], strict=True)), title="New subscriptions"))
    assert root.tag == f"{SVG}svg"
    assert root.attrib["role"] == "img"
    assert accessible_name(root) == "New subscriptions"
    assert "viewBox" in root.attrib
    assert "width" not in root.attrib and "height" not in root.attrib
    desc = root.find(f"{SVG}desc")
    assert desc is not None and "2026-03-01 to 2026-03-05" in (desc.text or "")
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "2026-03-01" in texts and "2026-03-05" in texts  # date axis
    assert "0" in texts and "4" in texts  # value axis


def test_daily_bars_are_proportional_to_their_values() -> None:
    values = [1, 4, 0, 2, 3]
    root = parse(daily_bars(list(zip(DAYS, values, strict=True)), title="Churned"))
    bars = [rect for rect in root.iter(f"{SVG}rect") if rect.attrib.get("class") == "bar"]
    assert len(bars) == len(values)
    heights = [float(bar.attrib["height"]) for bar in bars]
    unit = heights[0] / values[0]
    assert heights == pytest.approx([unit * value for value in values], abs=0.02)
    # Bars stand on one baseline, left to right in date order.
    bottoms = {round(float(bar.attrib["y"]) + float(bar.attrib["height"]), 1) for bar in bars}
    assert len(bottoms) == 1
    xs = [float(bar.attrib["x"]) for bar in bars]
    assert xs == sorted(xs)
    hover = [bar.find(f"{SVG}title") for bar in bars]
    assert [t.text for t in hover if t is not None][1] == "2026-03-02: 4"


def test_every_label_from_data_is_escaped() -> None:
    hostile = '<script>alert("x")</script> & "quotes"'
    svg = daily_bars([(DAYS[0], 3)], title=hostile, unit="<b>")
    assert "<script>" not in svg and "<b>" not in svg
    root = parse(svg)
    assert accessible_name(root) == hostile
    stacked = stacked_bars({hostile: {"<img src=x>": 2}}, title=hostile)
    assert "<script>" not in stacked and "<img" not in stacked
    labels = [t.text for t in parse(stacked).iter(f"{SVG}text")]
    assert hostile in labels and "<img src=x>" in labels


def test_colors_are_themable_by_class_with_no_inline_style_script_or_external_asset() -> None:
    svg = daily_bars([(DAYS[0], 1)], title="t") + stacked_bars({"stripe": {"a": 1, "b": 2}}, title="s")
    # The pages' Content-Security-Policy forbids inline styles: colors are attributes, themed by class.
    assert "style=" not in svg
    assert 'class="bar"' in svg and 'fill="currentColor"' in svg
    assert "segment series-1" in svg and "segment series-2" in svg
    assert (
        "<script" not in svg
        and "href" not in svg
        and "http://" not in svg.replace('xmlns="http://www.w3.org/2000/svg"', "")
    )


def test_stacked_bars_share_one_scale_across_groups() -> None:
    groups = {
        "stripe": {"pro_monthly": 6, "pro_yearly": 2},
        "app_store": {"pro_monthly": 4},
        "promotional": {},
    }
    root = parse(stacked_bars(groups, title="Active subscriptions", chart_id="actives"))
    assert root.attrib["aria-labelledby"] == "actives-title actives-desc"
    segments = [rect for rect in root.iter(f"{SVG}rect") if "segment" in rect.attrib.get("class", "").split()]
    widths = {
        (seg.find(f"{SVG}title").text or ""): float(seg.attrib["width"])  # type: ignore[union-attr]
        for seg in segments
    }
    assert widths["stripe, pro_monthly: 6"] == pytest.approx(3 * widths["stripe, pro_yearly: 2"])
    assert widths["app_store, pro_monthly: 4"] == pytest.approx(2 * widths["stripe, pro_yearly: 2"])
    # The same product has the same color in every group, and the legend names each product once.
    fills = {seg.find(f"{SVG}title").text: seg.attrib["fill"] for seg in segments}  # type: ignore[union-attr]
    assert fills["stripe, pro_monthly: 6"] == fills["app_store, pro_monthly: 4"]
    labels = [t.text for t in root.iter(f"{SVG}text")]
    assert labels.count("pro_monthly") == 1 and "promotional" in labels


def test_empty_and_all_zero_series_still_draw() -> None:
    assert parse(daily_bars([], title="Nothing")).find(f"{SVG}title") is not None
    zeros = parse(daily_bars([(day, 0) for day in DAYS], title="Zeros"))
    heights = [float(r.attrib["height"]) for r in zeros.iter(f"{SVG}rect") if r.attrib.get("class") == "bar"]
    assert heights == [0.0] * 5
    parse(stacked_bars({}, title="No stores"))


@pytest.mark.parametrize(
    ("largest", "ticks"),
    [
        (0, [0, 1]),
        (1, [0, 1]),
        (3, [0, 1, 2, 3]),
        (7, [0, 2, 4, 6, 8]),
        (18, [0, 5, 10, 15, 20]),
        (999, [0, 500, 1000]),
    ],
)
def test_value_axis_ticks_are_round_numbers(largest: int, ticks: list[int]) -> None:
    assert nice_ticks(largest) == ticks
