"""The dashboard's real-time settings: the ``dashboard`` section of ``TOWNSQUARE_REALTIME``,
read with ``rt_settings().section(DashboardSettings)`` (``realtime.conf``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from realtime.conf import env_name, settings_section


@settings_section("dashboard")
@dataclass(frozen=True)
class DashboardSettings:
    """Defaults, written only here. Environment: ``DASHBOARD_<NAME>``, or the field's own."""

    ENV_PREFIX: ClassVar[str] = "DASHBOARD_"

    #: At most this many ``dashboard.update`` frames a second; bursts are folded, the
    #: latest wins (``dashboard.publisher``).
    MAX_UPDATES_PER_SECOND: float = 2.0
    #: Seconds between two records of seed 000's feed while its switch is on
    #: (``dashboard.ticker``).
    FEED_INTERVAL_SECONDS: float = field(default=2.0, metadata=env_name("FEED_INTERVAL_SECONDS"))
