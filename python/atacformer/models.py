"""Region types, importable as ``atacformer.models`` like the seed's ``gtars.models``."""

from ._core import Region, RegionSet

__all__ = ["Region", "RegionSet"]
