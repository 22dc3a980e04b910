"""Customer profiles: RFM, value (CLV), engagement, preferences and location, per customer."""

from micromarketing.profiles.build import ProfileResult, build_profiles

__all__ = ["ProfileResult", "build_profiles"]
