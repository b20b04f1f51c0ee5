"""Simulated members and closed-loop experiments: a world whose truth is known (see docs/simulation.md)."""

from keyart.simulation.config import WORLD_CONFIG_VERSION, WorldConfig, demo_config, small_config
from keyart.simulation.world import SHOWCASE_TITLE_ID, Events, Outcomes, Requests, World

__all__ = [
    "SHOWCASE_TITLE_ID",
    "WORLD_CONFIG_VERSION",
    "Events",
    "Outcomes",
    "Requests",
    "World",
    "WorldConfig",
    "demo_config",
    "small_config",
]
