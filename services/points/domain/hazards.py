"""Hazards reported twice: a report of a hazard already paid in full earns less. Where an earlier
report of the same hazard would be (a box and a time window), whether one really is within the radius,
the reports paid so far found by grid cell, and the lock names that make two workers take turns."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from libs.activity.model import ActivityEvent
from services.points.domain.rules import Rules


@dataclass(frozen=True, slots=True)
class HazardSearch:
    """Where an earlier report of the same hazard would be: a box around the report, a time window."""

    lat_min: float
    lat_max: float
    lon_min: float
    lon_max: float
    reported_from: datetime
    reported_to: datetime
    radius_m: float


@dataclass(frozen=True, slots=True)
class EarlierReport:
    """A report already paid in full, as the caller found it."""

    report_id: str
    rider_id: str
    lat: float
    lon: float
    reported_at: datetime


def where_to_look(event: ActivityEvent, rules: Rules) -> HazardSearch | None:
    """Where an earlier report of the same hazard would be; None when the event needs no look (not a
    hazard report, or a rejected one)."""
    if event.type != "hazard.report.verified" or event.data["severity"] == "rejected":
        return None
    same = rules.categories.grassroots_governance.same_hazard
    lat, lon = float(event.data["lat"]), float(event.data["lon"])
    reported_at = datetime.fromisoformat(str(event.data["reported_at"]).upper())
    margin = 1.01  # the box must contain every point within the radius, whatever the rounding
    dlat = margin * same.radius_m / METRES_PER_DEGREE
    dlon = margin * same.radius_m / (METRES_PER_DEGREE * max(math.cos(math.radians(min(abs(lat), 89.0))), 0.01))
    window = timedelta(hours=same.window_hours)
    return HazardSearch(
        lat - dlat, lat + dlat, lon - dlon, lon + dlon, reported_at - window, reported_at + window, same.radius_m
    )


METRES_PER_DEGREE = 111_320.0
EARTH_RADIUS_M = 6_371_008.8


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle (haversine) distance in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def report_of(event: ActivityEvent) -> EarlierReport:
    """A hazard report event as a report paid in full (what later reports of the hazard are checked against)."""
    reported_at = datetime.fromisoformat(str(event.data["reported_at"]).upper())
    return EarlierReport(
        str(event.data["report_id"]), event.rider_id, float(event.data["lat"]), float(event.data["lon"]), reported_at
    )


def same_hazard(
    event: ActivityEvent, search: HazardSearch, candidates: Sequence[EarlierReport]
) -> EarlierReport | None:
    """The first candidate that really is within the radius and window (the box over-approximates)."""
    lat, lon = float(event.data["lat"]), float(event.data["lon"])
    for report in candidates:
        in_box = search.lat_min <= report.lat <= search.lat_max and search.lon_min <= report.lon <= search.lon_max
        within_time = search.reported_from <= report.reported_at <= search.reported_to
        if in_box and within_time and distance_m(lat, lon, report.lat, report.lon) <= search.radius_m:
            return report
    return None


def _grid_side(radius_m: float) -> float:
    return 2 * radius_m / METRES_PER_DEGREE  # degrees, in both directions


def _box_cells(search: HazardSearch) -> list[tuple[int, int]]:
    side = _grid_side(search.radius_m)
    rows = range(math.floor(search.lat_min / side), math.floor(search.lat_max / side) + 1)
    cols = range(math.floor(search.lon_min / side), math.floor(search.lon_max / side) + 1)
    return [(r, c) for r in rows for c in cols]


class PaidReports:
    """Reports paid in full, in the order they were paid, found by grid cell: a batch checks each new
    report against the few reports near it rather than against all of them."""

    def __init__(self, reports: Iterable[EarlierReport] = ()) -> None:
        self._reports: list[EarlierReport] = []
        self._grids: dict[float, dict[tuple[int, int], list[int]]] = {}  # by radius: cell -> positions
        for report in reports:
            self.add(report)

    def add(self, report: EarlierReport) -> None:
        self._reports.append(report)
        for radius_m, grid in self._grids.items():
            grid.setdefault(self._cell(report, radius_m), []).append(len(self._reports) - 1)

    def first_same_hazard(self, event: ActivityEvent, search: HazardSearch) -> EarlierReport | None:
        """What ``same_hazard`` finds among all the reports, looking only in the search box's cells."""
        grid = self._grids.get(search.radius_m)
        if grid is None:
            grid = self._grids[search.radius_m] = {}
            for position, report in enumerate(self._reports):
                grid.setdefault(self._cell(report, search.radius_m), []).append(position)
        near = sorted(p for cell in _box_cells(search) for p in grid.get(cell, ()))
        return same_hazard(event, search, [self._reports[p] for p in near])

    @staticmethod
    def _cell(report: EarlierReport, radius_m: float) -> tuple[int, int]:
        side = _grid_side(radius_m)
        return (math.floor(report.lat / side), math.floor(report.lon / side))


def hazard_cells(search: HazardSearch) -> list[str]:
    """Lock names of the grid cells a report's search box touches. The grid depends only on the radius,
    and a report lies in its own box, so two reports of the same hazard always share a cell: workers
    scoring them at the same moment take turns."""
    return sorted(f"hazard-cell:{search.radius_m:g}:{r}:{c}" for r, c in _box_cells(search))
