"""The segments sub-facade (``ws.segments``): rule segments plus clustering discovery in one place."""

from __future__ import annotations

from datetime import date

from sqlalchemy import delete, select

from micromarketing.errors import ConflictError
from micromarketing.progress import ProgressCallback, noop_progress
from micromarketing.segments.definitions import MEMBERS_TABLE, Segments
from micromarketing.segments.discover import DEFAULT_PREFIX, DiscoveryResult, discover_segments
from micromarketing.store.models import Segment, SegmentVersion


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

    def members(
        self, name: str, *, as_of: date | None = None, limit: int = 100, offset: int = 0
    ) -> tuple[list[str], int]:
        """One page of the members' ids of ``name`` (ordered by id) and how many there are in all."""
        members = self.member_table(name, as_of=as_of)
        total = int(members.count().execute())
        page = members.order_by("customer_id").limit(limit, offset=offset).customer_id.execute().tolist()
        return [str(c) for c in page], total

    def delete(self, name: str, *, actor: str = "cli") -> None:
        """Delete segment ``name``: its versions and memberships (refused while another rule uses it).

        Version numbers are never reused: a segment created again under the name continues them."""
        info = self.get(name)
        users = [
            i.name for i in self.list() if name in (i.details or {}).get("segments", []) and i.name != name
        ]
        if users:
            raise ConflictError(f"segment {name!r} is used by {', '.join(sorted(users))}: delete those first")
        if self.ctx.warehouse.has_table(MEMBERS_TABLE):
            empty = self.ctx.table(MEMBERS_TABLE).limit(0)
            self.ctx.warehouse.replace_rows(MEMBERS_TABLE, empty, {"segment": name})
            self.catalog.refresh()
        with self.ctx.ops.session() as s:
            seg = s.scalar(select(Segment).where(Segment.name == name))
            s.execute(delete(SegmentVersion).where(SegmentVersion.segment_id == seg.id))
            s.delete(seg)
        self.ctx.warehouse.changed()
        self.ctx.audit("segment.delete", name, {"version": info.version, "kind": info.kind}, actor=actor)

