"""The London boroughs shipped with the package (`data/london_boroughs.csv`): the areas of
the operating picture and the layout of the synthetic fleets.

Public figures, rounded: a centroid good to about 1 km, 2021 population and area. There
are no boundaries, so a point belongs to the area of the nearest centroid (a Voronoi
partition), an approximation stated wherever the picture is shown.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from functools import cache
from importlib import resources


@dataclass(frozen=True, slots=True)
class Borough:
    """One row of `london_boroughs.csv`."""

    borough: str
    bcu: str
    force: str
    centroid_lat: float
    centroid_lon: float
    population_2021: int
    area_km2: float

    @property
    def spread_m(self) -> float:
        """Gaussian sigma of the layout: half the radius of a disc of the borough's area."""
        return 0.5 * math.sqrt(self.area_km2 / math.pi) * 1000.0


@cache
def boroughs() -> tuple[Borough, ...]:
    """The boroughs shipped with the package (read once, then cached)."""
    text = (resources.files("dispatch_core") / "data" / "london_boroughs.csv").read_text(
        encoding="utf-8"
    )
    return tuple(
        Borough(
            borough=row["borough"],
            bcu=row["bcu"],
            force=row["force"],
            centroid_lat=float(row["centroid_lat"]),
            centroid_lon=float(row["centroid_lon"]),
            population_2021=int(row["population_2021"]),
            area_km2=float(row["area_km2"]),
        )
        for row in csv.DictReader(io.StringIO(text))
    )
