"""Output profiles: one module per seed contract (key layout and payload)."""

from archive.profiles.base import ArchiveEntry, BuildContext, Profile
from archive.profiles.braze import BrazeProfile
from archive.profiles.clevertap import CleverTapProfile

PROFILES = {p.name: p for p in (CleverTapProfile(), BrazeProfile())}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r} (expected one of {', '.join(PROFILES)})") from None


__all__ = ["ArchiveEntry", "BuildContext", "Profile", "PROFILES", "get_profile"]
