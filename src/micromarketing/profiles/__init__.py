"""Customer profiles: RFM, value (CLV), engagement, preferences and location, per customer."""

from micromarketing.profiles.build import build_profiles
from micromarketing.profiles.results import ProfileResult

__all__ = ["ProfileResult", "build_profiles"]
