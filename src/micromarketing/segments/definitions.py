"""Segment definitions, versions and materialised memberships; previews, overlap and SQL.

Definitions live in the operations store (:class:`~micromarketing.store.models.Segment` and one
:class:`~micromarketing.store.models.SegmentVersion` per change, with the guard decisions in
``details``).  Memberships live in the warehouse table ``segment_members`` (segment, version,
as_of, customer_id, materialised_at): one set per (segment, as-of date), replaced when
re-materialised, so past as-of dates stay reproducible.

A rule segment (kind ``rule``) is evaluated from its rule text; a discovered segment (kind
``discovered``, written by :mod:`micromarketing.segments.discover` through
:meth:`Segments.save_discovered_set`) has no rule and its membership is whatever was materialised.
Both are read the same way (:meth:`Segments.members`, ``in_segment('name')``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.types as ir
from sqlalchemy import func, select

from micromarketing.errors import ConflictError, DataError, NotFoundError, RuleError
from micromarketing.segments import guards
from micromarketing.segments.catalog import HIDDEN_COLUMNS, Catalog, SegmentRef, did_you_mean, to_date
from micromarketing.segments.rules import CompiledRule, compile_rule
from micromarketing.store.context import StoreContext
from micromarketing.store.models import Segment, SegmentVersion
from micromarketing.store.versions import next_version

MEMBERS_TABLE = "segment_members"
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]{0,63}$")
KINDS = ("rule", "discovered")
# Columns never shown in previews / differences (identifiers and contact details).
PRIVATE_COLUMNS = frozenset(
    {
        "customer_id",
        "first_name",
        "last_name",
        "email",
        "phone",
        "birth_date",
        "lat",
        "lon",
        "h3_cell",
        "postcode",
        "timezone",
        "job_title",
    }
)


@dataclass
class SegmentInfo:
    """A stored segment: its latest version and, if materialised, its latest membership size."""

    name: str
    kind: str
    description: str
    version: int
    rule: str
    created_at: datetime
    updated_at: datetime
    details: dict[str, Any] = field(default_factory=dict)
    size: int | None = None
    as_of: date | None = None


@dataclass
class Materialisation:
    """The result of materialising one segment version as of one date."""

    segment: str
    version: int
    as_of: date
    size: int
    warnings: list[str] = field(default_factory=list)


@dataclass
class DiscoveredMembers:
    """One segment for :meth:`Segments.save_discovered_set`: its name, its members (an Ibis table
    with ``customer_id`` or the ids; none for a retired segment) and its version's description
    and details; ``replace`` adds a version to an existing segment."""

    name: str
    members: ir.Table | Iterable[str]
    description: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    replace: bool = False


@dataclass
class FieldDifference:
    """How the segment differs from the base on one field."""

    field: str
    kind: str  # numeric | category
    segment_value: float | str | None
    base_value: float | str | None
    score: float  # |standardised mean difference| or |share difference| / base share, for ranking
    detail: str


@dataclass
class Preview:
    """What a segment would contain: size, value, a sample and its most distinctive fields."""

    rule: str
    as_of: date
    size: int
    base_size: int
    share_of_base: float
    revenue_share: float | None
    average_clv: float | None
    sample: list[dict[str, Any]]
    differences: list[FieldDifference]
    warnings: list[str] = field(default_factory=list)


@dataclass
class Overlap:
    """Pairwise shared members between segments (latest materialisation of each)."""

    names: list[str]
    sizes: dict[str, int]
    shared: dict[str, dict[str, int]]
    warnings: list[str] = field(default_factory=list)


class Segments:
    """Segment operations over one workspace (``Segments(ctx)``; cheap to create)."""

    def __init__(self, ctx: StoreContext) -> None:
        self.ctx = ctx
        self.catalog = Catalog(ctx.warehouse)

    # -- settings -------------------------------------------------------------------------------
    @property
    def min_size(self) -> int:
        return int(self.ctx.settings.segments.min_size)

    @property
    def sensitive(self) -> list[str]:
        return list(self.ctx.settings.segments.sensitive_fields)

    # -- definitions ----------------------------------------------------------------------------
    def _resolve(self, name: str) -> SegmentRef | None:
        with self.ctx.ops.session() as s:
            seg = s.scalar(select(Segment).where(Segment.name == name))
            if seg is None:
                return None
            ver = self._latest_version(s, seg.id)
            return SegmentRef(seg.name, seg.kind, ver.version if ver else 0, ver.rule if ver else "")

    @staticmethod
    def _latest_version(session: Any, segment_id: int) -> SegmentVersion | None:
        return session.scalar(
            select(SegmentVersion)
            .where(SegmentVersion.segment_id == segment_id)
            .order_by(SegmentVersion.version.desc())
            .limit(1)
        )

    def get(self, name: str) -> SegmentInfo:
        """The stored segment ``name`` (latest version); :class:`NotFoundError` if absent."""
        infos = {i.name: i for i in self.list(names=[name])}
        if name not in infos:
            known = [i.name for i in self.list()]
            raise NotFoundError(f"no segment named {name!r}{did_you_mean(name, known)}")
        return infos[name]

    def list(self, names: Iterable[str] | None = None) -> list[SegmentInfo]:
        """All stored segments (or those in ``names``) with their latest version and size."""
        wanted = set(names) if names is not None else None
        out: list[SegmentInfo] = []
        with self.ctx.ops.session() as s:
            for seg in s.scalars(select(Segment).order_by(Segment.name)):
                if wanted is not None and seg.name not in wanted:
                    continue
                ver = self._latest_version(s, seg.id)
                if ver is None:
                    continue
                out.append(
                    SegmentInfo(
                        seg.name,
                        seg.kind,
                        seg.description,
                        ver.version,
                        ver.rule,
                        seg.created_at,
                        ver.created_at,
                        dict(ver.details or {}),
                    )
                )
        sizes = self._latest_sizes([i.name for i in out])
        for info in out:
            if info.name in sizes and sizes[info.name][0] == info.version:
                info.as_of, info.size = sizes[info.name][1], sizes[info.name][2]
        return out

    def versions(self, name: str) -> list[dict[str, Any]]:
        """Every version of ``name``: number, rule, details and when it was created."""
        with self.ctx.ops.session() as s:
            seg = s.scalar(select(Segment).where(Segment.name == name))
            if seg is None:
                raise NotFoundError(f"no segment named {name!r}")
            rows = s.scalars(
                select(SegmentVersion)
                .where(SegmentVersion.segment_id == seg.id)
                .order_by(SegmentVersion.version)
            )
            return [
                {"version": v.version, "rule": v.rule, "details": v.details, "created_at": v.created_at}
                for v in rows
            ]

    # -- compile ----------------------------------------------------------------------------------
    def compile(self, rule: str, as_of: date | None = None, *, defining: str | None = None) -> CompiledRule:
        """Compile rule text (``in_segment`` resolves against the stored segments).

        ``defining`` names the segment the rule is for, so a rule that reaches back to it through
        ``in_segment`` is refused as a cycle.
        """
        return compile_rule(
            rule,
            self.catalog,
            as_of=as_of,
            resolve_segment=self._resolve,
            _stack=(defining,) if defining else (),
        )

    def _compiled_for(self, name: str | None, rule: str | None, as_of: date | None) -> CompiledRule:
        if (name is None) == (rule is None):
            raise RuleError("give either a segment name or a rule")
        if rule is not None:
            return self.compile(rule, as_of)
        info = self.get(name)  # type: ignore[arg-type]
        if info.kind != "rule":
            raise RuleError(f"segment {name!r} is {info.kind}: it has no rule to compile")
        return self.compile(info.rule, as_of)

    def member_table(
        self, name: str | None = None, *, rule: str | None = None, as_of: date | None = None
    ) -> ir.Table:
        """Members (``customer_id``) of a stored segment or a rule as of ``as_of``.

        A rule segment is evaluated afresh; a discovered segment reads its materialisation (the
        latest one on or before ``as_of``).
        """
        if rule is None and name is not None and self.get(name).kind != "rule":
            return self._materialised(name, as_of)
        return self._compiled_for(name, rule, as_of).members()

    def _materialised(self, name: str, as_of: date | None) -> ir.Table:
        info = self.get(name)
        members = self.catalog.table(MEMBERS_TABLE)
        if members is None:
            raise DataError(f"segment {name!r} has no materialised membership")
        rows = members.filter([members.segment == name, members.version == info.version])
        if as_of is not None:
            rows = rows.filter(rows.as_of <= ibis.literal(as_of))
        latest = to_date(rows.as_of.max().execute())
        if latest is None:
            raise DataError(
                f"segment {name!r} has no materialised membership"
                + (f" on or before {as_of}" if as_of else "")
            )
        return rows.filter(rows.as_of == ibis.literal(latest)).select("customer_id")

    # -- create / version / materialise -------------------------------------------------------
    def create(
        self,
        name: str,
        rule: str,
        *,
        description: str = "",
        allow_sensitive: bool = False,
        reason: str | None = None,
        as_of: date | None = None,
        replace: bool = False,
        actor: str = "cli",
    ) -> Materialisation:
        """Validate, store (as a new version when ``replace``) and materialise a rule segment.

        Raises :class:`RuleError` for an invalid rule, :class:`PolicyError` for protected
        attributes without ``allow_sensitive`` and a reason.  Returns the materialisation, whose
        warnings carry the size, overlap and power guards.
        """
        _check_name(name)
        compiled = self.compile(rule, as_of, defining=name)
        found = guards.sensitive_fields(compiled.fields, self.sensitive)
        guards.check_sensitive(name, found, allow=allow_sensitive, reason=reason)
        details: dict[str, Any] = {"fields": sorted(compiled.fields), "segments": list(compiled.segments)}
        if found:
            details.update(allow_sensitive=True, reason=reason, sensitive_fields=sorted(found))
        self._store_version(name, "rule", rule, description, details, replace=replace)
        if found:
            self.ctx.audit(
                "segment.sensitive",
                name,
                {"rule": rule, "fields": sorted(found), "reason": reason},
                actor=actor,
            )
        return self.materialise(name, as_of, compiled=compiled)

    def save_discovered(
        self,
        name: str,
        members: ir.Table | Iterable[str],
        *,
        as_of: date,
        description: str = "",
        details: dict[str, Any] | None = None,
        replace: bool = False,
    ) -> Materialisation:
        """Store a discovered segment (kind ``discovered``) and materialise the given members.

        ``members`` is an Ibis table with a ``customer_id`` column or an iterable of ids (none:
        the new version has no members, as a retired segment's).  The size, overlap and power
        guards run exactly as for rule segments.  One segment of :meth:`save_discovered_set`.
        """
        found = DiscoveredMembers(name, members, description, dict(details or {}), replace)
        return self.save_discovered_set([found], as_of=as_of)[0]

    def save_discovered_set(
        self, segments: Sequence[DiscoveredMembers], *, as_of: date
    ) -> list[Materialisation]:
        """Store several discovered segments as of ``as_of``: a new version of each, then all their
        members in one warehouse write, then the guards once on the finished set.

        A discovery run saves its clusters (and empties the ones it retires) this way: written
        one by one, each segment would rewrite the members table (Spark rewrites the whole table
        per write) and its guards would judge a half-written set.  The versions are stored in
        one transaction, so a name that exists without ``replace`` stores none of them.
        """
        names = [d.name for d in segments]
        for name in names:
            _check_name(name)
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise DataError(f"segment names repeat in one set: {', '.join(repeated)}")
        versions = self._store_versions(
            "discovered", [(d.name, "", d.description, dict(d.details), d.replace) for d in segments]
        )
        return self._write_members(
            [(d.name, v, _id_table(d.members)) for d, v in zip(segments, versions, strict=True)], as_of
        )

    def _store_version(
        self, name: str, kind: str, rule: str, description: str, details: dict[str, Any], *, replace: bool
    ) -> int:
        return self._store_versions(kind, [(name, rule, description, details, replace)])[0]

    def _store_versions(
        self, kind: str, specs: Sequence[tuple[str, str, str, dict[str, Any], bool]]
    ) -> list[int]:
        """Store a new version of each (name, rule, description, details, replace), in one transaction."""
        versions = []
        with self.ctx.ops.session() as s:
            for name, rule, description, details, replace in specs:
                seg = s.scalar(select(Segment).where(Segment.name == name))
                if seg is not None and not replace:
                    raise ConflictError(
                        f"segment {name!r} already exists; use --replace to add a new version"
                    )
                if seg is None:
                    seg = Segment(name=name, kind=kind, description=description)
                    s.add(seg)
                    s.flush()
                else:
                    if seg.kind != kind:
                        raise ConflictError(f"segment {name!r} is {seg.kind}, not {kind}")
                    if description:
                        seg.description = description
                version = next_version(s, "segment", name)
                s.add(SegmentVersion(segment_id=seg.id, version=version, rule=rule, details=details))
                versions.append(version)
        self.ctx.warehouse.changed()  # which version is current: remembered materialisations are stale
        return versions

    def materialise(
        self, name: str, as_of: date | None = None, *, compiled: CompiledRule | None = None
    ) -> Materialisation:
        """Evaluate rule segment ``name`` as of ``as_of`` and store its membership (replacing that date's)."""
        info = self.get(name)
        if info.kind != "rule":
            raise RuleError(
                f"segment {name!r} is {info.kind}: it is materialised by the code that discovers it"
            )
        compiled = compiled or self.compile(info.rule, as_of)
        [result] = self._write_members([(name, info.version, compiled.members())], compiled.as_of)
        result.warnings[:0] = compiled.warnings
        return result

    def _write_members(self, segments: list[tuple[str, int, ir.Table]], as_of: date) -> list[Materialisation]:
        """Replace the members of each (name, version, members) as of ``as_of`` in one warehouse
        write, then run the guards once over the result and record them with each version."""
        stamp = ibis.literal(datetime.now(UTC).replace(microsecond=0), type="timestamp('UTC')")
        parts = [
            members.select(
                segment=ibis.literal(name, type="string"),
                version=ibis.literal(version, type="int64"),
                as_of=ibis.literal(as_of, type="date"),
                customer_id=members.customer_id.cast("string"),
                materialised_at=stamp,
            )
            for name, version, members in segments
        ]
        rows = functools.reduce(lambda a, b: a.union(b, distinct=False), parts).distinct()
        names = [name for name, _, _ in segments]
        self.ctx.warehouse.replace_rows(MEMBERS_TABLE, rows, {"segment": names, "as_of": as_of})
        self.catalog.refresh()
        counts = self._counts()
        sizes = _latest(counts)
        written = {(seg, v): n for seg, v, at, n in counts if at == as_of}
        shared = self._shared(sizes, names, list(sizes))
        power = guards.power_warnings({n: v[2] for n, v in sizes.items()})
        out = []
        for name, version, _ in segments:
            size = written.get((name, version), 0)
            warnings = [w for w in [guards.min_size_warning(name, size, self.min_size)] if w]
            warnings += guards.overlap_warnings(
                name, size, {o: (sizes[o][2], n) for o, n in shared.get(name, {}).items() if o in sizes}
            )
            out.append(Materialisation(name, version, as_of, size, warnings + power))
        with self.ctx.ops.session() as s:
            for mat in out:
                ver = s.scalar(
                    select(SegmentVersion).join(Segment, SegmentVersion.segment_id == Segment.id)
                    .where(Segment.name == mat.segment, SegmentVersion.version == mat.version)
                )
                ver.details = {
                    **(ver.details or {}),
                    "last_size": mat.size,
                    "last_as_of": as_of.isoformat(),
                    # the newest as_of of this version (a later write may be of an earlier date)
                    "latest_as_of": (sizes[mat.segment][1] if mat.segment in sizes else as_of).isoformat(),
                    "warnings": mat.warnings,
                }
        self.ctx.warehouse.changed()
        return out

    def _current_versions(self) -> dict[str, int]:
        """segment -> its latest version number (from the operations store)."""
        with self.ctx.ops.session() as s:
            rows = s.execute(
                select(Segment.name, func.max(SegmentVersion.version))
                .join(SegmentVersion, SegmentVersion.segment_id == Segment.id)
                .group_by(Segment.name)
            ).all()
        return {name: int(v) for name, v in rows}

    def latest_materialisations(self, names: Iterable[str]) -> dict[str, tuple[int, date]]:
        """segment -> (current version, as_of of that version's latest materialisation) for the
        segments ``names`` that have one.

        Read from the operations store, where each materialisation records it (no scan of the
        members table: the segment of one asks this on every lookup, so the answer for every
        segment is remembered until the warehouse changes, see
        :meth:`~micromarketing.store.warehouse.Warehouse.memo`); versions materialised before it
        was recorded are looked up in the warehouse once, and recorded."""
        wanted = set(names)
        if not wanted:
            return {}
        latest = self.ctx.warehouse.memo("segments.latest_materialisations", self._every_latest)
        return {name: latest[name] for name in wanted if name in latest}

    def _every_latest(self) -> dict[str, tuple[int, date]]:
        newest = (
            select(SegmentVersion.segment_id, func.max(SegmentVersion.version).label("version"))
            .group_by(SegmentVersion.segment_id)
            .subquery()
        )
        with self.ctx.ops.session() as s:
            rows = s.execute(
                select(Segment.name, SegmentVersion.version, SegmentVersion.details)
                .join(SegmentVersion, SegmentVersion.segment_id == Segment.id)
                .join(newest, (newest.c.segment_id == Segment.id)
                      & (newest.c.version == SegmentVersion.version))
            ).all()
        latest: dict[str, tuple[int, date]] = {}
        unrecorded = []
        for name, version, details in rows:
            at = (details or {}).get("latest_as_of")
            if at:
                latest[name] = (int(version), date.fromisoformat(at))
            else:
                unrecorded.append(name)
        if unrecorded:
            found = {n: (v, d) for n, (v, d, _) in self._latest_sizes(unrecorded).items()}
            self._record_latest(found)
            latest.update(found)
        return latest

    def _record_latest(self, latest: dict[str, tuple[int, date]]) -> None:
        """Record each version's latest as_of found in the warehouse, so it is looked up once."""
        with self.ctx.ops.session() as s:
            for name, (version, as_of) in latest.items():
                ver = s.scalar(
                    select(SegmentVersion).join(Segment, SegmentVersion.segment_id == Segment.id)
                    .where(Segment.name == name, SegmentVersion.version == version)
                )
                if ver is not None:
                    ver.details = {**(ver.details or {}), "latest_as_of": as_of.isoformat()}

    def _latest_sizes(self, names: list[str] | None = None) -> dict[str, tuple[int, date, int]]:
        """segment -> (version, as_of, size) of the latest materialisation of its *current* version.

        Segments whose current version has no members (e.g. a retired discovered segment) are
        left out: they are not active, and older versions' rows must not stand in for them.
        """
        return _latest(self._counts(names))

    def _counts(self, names: list[str] | None = None) -> list[tuple[str, int, date, int]]:
        """(segment, version, as_of, members) of every materialisation of the segments' current
        versions (of all segments, or of ``names``), counted by one query."""
        members = self.catalog.table(MEMBERS_TABLE)
        if members is None:
            return []
        current = self._current_versions()
        if names is not None:
            current = {n: v for n, v in current.items() if n in set(names)}
        if not current:
            return []
        rows = members.filter(members.segment.isin(list(current)))
        counts = (
            rows.group_by(["segment", "version", "as_of"])
            .aggregate(n=ibis._.count())
            .to_pyarrow()
            .to_pylist()
        )
        return [
            (r["segment"], int(r["version"]), to_date(r["as_of"]), int(r["n"]))  # type: ignore[misc]
            for r in counts
            if int(r["version"]) == current.get(r["segment"])
        ]

    def latest_members(self, names: Iterable[str]) -> ir.Table | None:
        """(segment, customer_id) of the latest materialisation of each of ``names``' current
        versions (None when none has one), found through :meth:`latest_materialisations`: no
        query runs until the table is read, so reading several segments costs one query."""
        return self._latest_members(self.latest_materialisations(names))

    def _latest_members(self, latest: Mapping[str, tuple[Any, ...]]) -> ir.Table | None:
        """(segment, customer_id) of the materialisations ``latest`` names: segment -> (version,
        as_of, …), as :meth:`_latest_sizes` and :meth:`latest_materialisations` give them."""
        members = self.catalog.table(MEMBERS_TABLE)
        if members is None or not latest:
            return None
        conds = [
            (members.segment == n) & (members.version == v) & (members.as_of == ibis.literal(d))
            for n, (v, d, *_) in latest.items()
        ]
        return members.filter(ibis.or_(*conds)).select("segment", "customer_id")

    def _shared(
        self, latest: dict[str, tuple[int, date, int]], left: list[str], right: list[str]
    ) -> dict[str, dict[str, int]]:
        """a -> {b: members shared} for the segments ``a`` in ``left`` and ``b`` in ``right`` (pairs
        sharing nobody left out, ``a`` with itself included), in their ``latest`` materialisations;
        one join."""
        members = self._latest_members(latest)
        if members is None or not left or not right:
            return {}
        a = members.filter(members.segment.isin(left))
        b = members.filter(members.segment.isin(right)).select(seg_b="segment", cid="customer_id")
        pairs = (
            a.join(b, a.customer_id == b.cid)
            .group_by(["segment", "seg_b"])
            .aggregate(n=ibis._.count())
            .to_pyarrow()
            .to_pylist()
        )
        shared: dict[str, dict[str, int]] = {}
        for r in pairs:
            shared.setdefault(r["segment"], {})[r["seg_b"]] = int(r["n"])
        return shared

    # -- reading ----------------------------------------------------------------------------------
    def size(self, name: str, as_of: date | None = None) -> int:
        """Number of members of ``name`` as of ``as_of``."""
        return int(self.member_table(name, as_of=as_of).count().execute())

    def export_members(self, name: str, out: str | Path, *, as_of: date | None = None) -> int:
        """Write the members of ``name`` (customer_id, segment, as_of) to CSV or Parquet; returns how many."""
        path = Path(out)
        suffix = path.suffix.lower()
        if suffix not in (".csv", ".parquet"):
            raise DataError(f"{path}: unsupported output type {suffix!r} (use .csv or .parquet)")
        members = self.member_table(name, as_of=as_of)
        when = as_of or self.catalog.default_as_of()
        data = (
            members.mutate(segment=ibis.literal(name), as_of=ibis.literal(when))
            .order_by("customer_id")
            .to_pyarrow()
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        if suffix == ".csv":
            import pyarrow.csv as pacsv

            pacsv.write_csv(data, path)
        else:
            import pyarrow.parquet as pq

            pq.write_table(data, path)
        return data.num_rows

    def sql(
        self,
        name: str | None = None,
        *,
        rule: str | None = None,
        dialect: str | None = None,
        as_of: date | None = None,
    ) -> str:
        """The SQL that selects the members, in ``dialect`` ("duckdb" or "spark")."""
        compiled = self._compiled_for(name, rule, as_of)
        return self.ctx.warehouse.compile(compiled.members(), dialect, pretty=True)

    def preview(
        self,
        name: str | None = None,
        *,
        rule: str | None = None,
        as_of: date | None = None,
        sample: int = 10,
        top: int = 5,
    ) -> Preview:
        """Size, share of base, revenue share, average CLV, a sample and the most distinctive fields."""
        compiled = (
            self._compiled_for(name, rule, as_of)
            if (rule is not None or self.get(name).kind == "rule")
            else None
        )  # type: ignore[arg-type]
        members = compiled.members() if compiled is not None else self._materialised(name, as_of)  # type: ignore[arg-type]
        when = compiled.as_of if compiled is not None else (as_of or self.catalog.default_as_of())
        base = self.catalog.base()
        flagged = base.mutate(_in=base.customer_id.isin(members.customer_id))
        aggs: dict[str, Any] = {"n": flagged.count(), "m": flagged._in.cast("int64").sum()}
        if "monetary" in base.columns:
            aggs["rev"] = flagged.monetary.sum()
            aggs["rev_in"] = ibis.ifelse(flagged._in, flagged.monetary, 0).sum()
        if "clv" in base.columns:
            aggs["clv_in"] = ibis.ifelse(flagged._in, flagged.clv, None).mean()
        totals = flagged.aggregate(**aggs).to_pyarrow().to_pylist()[0]
        size, base_size = int(totals["m"] or 0), int(totals["n"] or 0)
        rev = totals.get("rev")
        revenue_share = (float(totals["rev_in"] or 0) / float(rev)) if rev else None
        clv = totals.get("clv_in")
        show = [
            c
            for c in base.columns
            if c not in PRIVATE_COLUMNS
            and c not in HIDDEN_COLUMNS
            and not guards.is_sensitive(c, self.sensitive)
        ][:12]
        sample_rows = (
            flagged.filter(flagged._in)
            .select("customer_id", *show)
            .order_by("customer_id")
            .limit(sample)
            .to_pyarrow()
            .to_pylist()
        )
        diffs = (
            _differences(
                flagged,
                [
                    c
                    for c in base.columns
                    if c not in PRIVATE_COLUMNS and not guards.is_sensitive(c, self.sensitive)
                ],
                top,
            )
            if size
            else []
        )
        warnings = list(compiled.warnings) if compiled else []
        w = guards.min_size_warning(name or "(rule)", size, self.min_size)
        if w:
            warnings.append(w)
        return Preview(
            compiled.text if compiled else "",
            when,
            size,
            base_size,
            size / base_size if base_size else 0.0,
            revenue_share,
            float(clv) if clv is not None else None,
            sample_rows,
            diffs,
            warnings,
        )

    def overlap(self, names: list[str] | None = None) -> Overlap:
        """Matrix of shared members between segments (their latest materialisations)."""
        latest = self._latest_sizes(names)
        chosen = sorted(latest)
        shared = {a: {b: 0 for b in chosen} for a in chosen}
        for a, row in self._shared(latest, chosen, chosen).items():
            shared[a].update(row)
        sizes = {n: latest[n][2] for n in chosen}
        warnings: list[str] = []
        for i, a in enumerate(chosen):
            pairs_after = {b: (sizes[b], shared[a][b]) for b in chosen[i + 1 :]}
            warnings += guards.overlap_warnings(a, sizes[a], pairs_after)
        warnings += guards.power_warnings(sizes)
        return Overlap(chosen, sizes, shared, warnings)

    def fairness(self, name: str, as_of: date | None = None) -> guards.FairnessReport:
        """Composition of ``name`` on sensitive fields vs the base, flagging impact ratios below 0.8."""
        members = self.member_table(name, as_of=as_of)
        return guards.fairness_report(name, self.catalog.base(), members, self.sensitive)

    def enforce_min_size(self, name: str, *, force: bool = False, as_of: date | None = None) -> int:
        """For campaigns: the size of ``name``; raises PolicyError below the minimum unless ``force``."""
        size = self.size(name, as_of)
        guards.enforce_min_size(name, size, self.min_size, force=force)
        return size


def _differences(flagged: ir.Table, columns: list[str], top: int) -> list[FieldDifference]:
    """Rank fields by how much the segment differs from the base (one aggregate query)."""
    schema = flagged.schema()
    numeric = [c for c in columns if schema[c].is_numeric() and not schema[c].is_boolean()]
    categorical = [c for c in columns if schema[c].is_string()]
    out: list[FieldDifference] = []
    if numeric:
        aggs = {}
        for c in numeric:
            x = flagged[c].cast("float64")
            aggs[f"{c}__b"] = x.mean()
            aggs[f"{c}__s"] = x.std()
            aggs[f"{c}__m"] = ibis.ifelse(flagged._in, x, None).mean()
        row = flagged.aggregate(**aggs).to_pyarrow().to_pylist()[0]
        for c in numeric:
            b, sd, m = row[f"{c}__b"], row[f"{c}__s"], row[f"{c}__m"]
            if b is None or m is None or not sd:
                continue
            score = abs(m - b) / sd
            out.append(
                FieldDifference(
                    c,
                    "numeric",
                    round(m, 3),
                    round(b, 3),
                    round(score, 3),
                    f"mean {m:.3g} vs {b:.3g} in the base ({(m - b) / sd:+.2f} sd)",
                )
            )
    for c in categorical:
        rows = (
            flagged.group_by(c)
            .aggregate(n=ibis._.count(), k=ibis._._in.cast("int64").sum())
            .order_by(ibis.desc("k"))
            .limit(20)
            .to_pyarrow()
            .to_pylist()
        )
        n_all = sum(r["n"] for r in rows) or 1
        k_all = sum(int(r["k"] or 0) for r in rows) or 1
        best = None
        for r in rows:
            if r[c] is None:
                continue
            s_share, b_share = int(r["k"] or 0) / k_all, r["n"] / n_all
            score = abs(s_share - b_share) / max(b_share, 1e-9) * min(s_share + b_share, 1.0)
            if best is None or score > best.score:
                best = FieldDifference(
                    c,
                    "category",
                    r[c],
                    None,
                    round(score, 3),
                    f"{r[c]!r}: {s_share:.0%} of the segment vs {b_share:.0%} of the base",
                )
        if best is not None:
            out.append(best)
    out.sort(key=lambda d: -d.score)
    return out[:top]


def _latest(counts: list[tuple[str, int, date, int]]) -> dict[str, tuple[int, date, int]]:
    """segment -> (version, as_of, size) of its newest materialisation among ``counts``."""
    latest: dict[str, tuple[int, date, int]] = {}
    for segment, version, as_of, n in counts:
        if segment not in latest or as_of > latest[segment][1]:
            latest[segment] = (version, as_of, n)
    return latest


def _id_table(members: ir.Table | Iterable[str]) -> ir.Table:
    """``members`` as a table of ``customer_id``: an Ibis table's column, or the distinct ids given."""
    if isinstance(members, ir.Table):
        return members.select("customer_id")
    ids = sorted({str(m) for m in members})
    return ibis.memtable({"customer_id": ids}, schema={"customer_id": "string"})


def _check_name(name: str) -> None:
    if not NAME_RE.match(name or ""):
        raise DataError(
            f"invalid segment name {name!r}: use letters, digits, '_' or '-', starting with a letter"
        )
