"""The segments sub-facade (``ws.segments``): rule segments plus clustering discovery in one place."""

from __future__ import annotations

from micromarketing.progress import ProgressCallback, noop_progress
from micromarketing.segments.definitions import Segments
from micromarketing.segments.discover import DEFAULT_PREFIX, DiscoveryResult, discover_segments


class SegmentService(Segments):
    """:class:`Segments` and discovery, so interfaces reach every segment operation through one object."""

    def discover(
        self,
        *,
        features: list[str] | None = None,
        k: int | str = "auto",
        min_size: int | None = None,
        seed: int = 0,
        prefix: str = DEFAULT_PREFIX,
        save: bool = True,
        progress: ProgressCallback = noop_progress,
    ) -> DiscoveryResult:
        """Cluster the customers and save each cluster as a discovered segment with a persona."""
        return discover_segments(
            self.ctx,
            features=features,
            k=k,
            min_size=min_size,
            seed=seed,
            prefix=prefix,
            save=save,
            progress=progress,
        )
