"""Cost trends that summarise: raw runs while they fit, else time buckets aggregated in SQL.

One profile at a time, never profiles mixed on one axis. A series is one endpoint's measured
runs, or its synthetic history (`smartbench seed`, the demo's back-fill), never both mixed.

- **Grain.** Raw points while every series shown has at most RAW_LIMIT runs in the range; else
  buckets of an hour, a day or a week, the finest that keeps a series within RAW_LIMIT buckets.
  Buckets are aligned to UTC hours, days and ISO weeks (Mondays), computed from the epoch by the
  database (`extract(epoch ...)` on PostgreSQL, `strftime('%s', ...)` on SQLite).
- **Per bucket** (in SQL, one query): the run count, the median and the p10/p90 of the cost per
  million tokens at the SLO (linear interpolation between closest ranks, as numpy's default and
  PostgreSQL's `percentile_cont`), the mean output tokens/s at the SLO, and how many runs rest on
  a degraded measurement. Ranks come from window functions, so SQLite and PostgreSQL run the same
  statement.
- **Markers** where an endpoint's prices or serving stack changed between two consecutive runs of
  the profile (`runs.price_key`, `runs.stack_key`, compared with `lag()` in SQL).
- **At most MAX_SERIES endpoints** are drawn at once (the page and its JSON twin say which and how
  many more there are); a hundred lines on one chart inform nobody.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Float, Integer, and_, case, cast, exists, extract, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from app.domain import OWN_SOURCES, RunSource
from app.models import ChangePoint, Endpoint, Run, RunStatus
from app.schemas import CostSeries, CostTrends, TrendMarker, TrendPoint
from app.services import changes
from app.snapshot import PRICE_FIELDS, STACK_FIELDS, CostInputs, EndpointSnapshot

RAW_LIMIT = 200  # raw points, or buckets, per series at most
MAX_SERIES = 10  # endpoints drawn at once
GRAINS = (("hour", 3_600), ("day", 86_400), ("week", 604_800))
WEEK_ORIGIN_S = 4 * 86_400  # 1970-01-05, a Monday: weeks start on Mondays, days at 00:00 UTC
QUANTILES = (10, 50, 90)


def grain_for(span: timedelta) -> tuple[str, int]:
    """The finest bucket that keeps a series of this span within RAW_LIMIT buckets."""
    seconds = span.total_seconds()
    for name, width in GRAINS:
        if seconds / width <= RAW_LIMIT:
            return name, width
    return GRAINS[-1]


def bucket_start(index: int, width: int) -> datetime:
    return datetime.fromtimestamp(WEEK_ORIGIN_S + index * width, UTC)


def _epoch(dialect: str) -> ColumnElement[Any]:
    if dialect == "postgresql":
        return cast(func.floor(extract("epoch", Run.created_at)), Integer)
    return cast(func.strftime("%s", Run.created_at), Integer)


def _bucket(dialect: str, width: int) -> ColumnElement[Any]:
    return (_epoch(dialect) - WEEK_ORIGIN_S) // literal(width, Integer)


def bucket_of(session: AsyncSession, width: int) -> ColumnElement[Any]:
    """The bucket index of a run's created_at, on the session's database."""
    return _bucket(session.get_bind().dialect.name, width)


def in_range(profile: str, since: datetime, until: datetime) -> ColumnElement[bool]:
    return and_(
        Run.profile_name == profile,
        Run.status == RunStatus.succeeded.value,
        Run.created_at >= since,
        Run.created_at <= until,
    )


async def pick_endpoints(
    session: AsyncSession, *, profile: str, since: datetime, until: datetime, wanted: list[int]
) -> tuple[list[tuple[int, str]], int]:
    """The endpoints to draw (those asked for, else the first MAX_SERIES by name that have runs
    of the profile in the range), and how many endpoints have such runs in all."""
    has_runs = exists().where(Run.endpoint_id == Endpoint.id, in_range(profile, since, until))
    available = await session.scalar(select(func.count()).select_from(Endpoint).where(has_runs)) or 0
    query = select(Endpoint.id, Endpoint.name).where(has_runs).order_by(Endpoint.name, Endpoint.id)
    if wanted:
        query = query.where(Endpoint.id.in_(wanted[:MAX_SERIES]))
    rows = (await session.execute(query.limit(MAX_SERIES))).all()
    return [(row.id, row.name) for row in rows], int(available)


async def cost_series(
    session: AsyncSession,
    *,
    profile: str,
    since: datetime,
    until: datetime,
    endpoints: list[tuple[int, str]],
    grain: str | None = None,
    location: str | None = None,
) -> tuple[str, list[CostSeries]]:
    """The cost series of these endpoints on one profile: raw runs, or buckets (`grain` forces
    one of hour/day/week), of every location or one. Returns the grain used ("run" for raw points)."""
    ids = [endpoint_id for endpoint_id, _ in endpoints]
    if not ids:
        return grain or "run", []
    names = dict(endpoints)
    where = and_(in_range(profile, since, until), Run.endpoint_id.in_(ids))
    if location is not None:
        where = and_(where, Run.location == location)
    if grain is None:
        counts = (
            await session.execute(select(func.count()).where(where).group_by(Run.endpoint_id))
        ).scalars()
        grain = "run" if max(counts, default=0) <= RAW_LIMIT else grain_for(until - since)[0]
    synthetic = (Run.source == RunSource.synthetic.value).label("synthetic")
    imported = Run.source.not_in(OWN_SOURCES).label("imported")
    series: dict[tuple[int, bool], CostSeries] = {}

    def add(endpoint_id: int, is_synthetic: bool, point: TrendPoint) -> None:
        key = (endpoint_id, bool(is_synthetic))
        if key not in series:
            series[key] = CostSeries(
                endpoint_id=endpoint_id, endpoint=names[endpoint_id], profile=profile,
                synthetic=bool(is_synthetic), points=[],
            )  # fmt: skip
        series[key].points.append(point)

    if grain == "run":
        rows = await session.execute(
            select(Run.id, Run.endpoint_id, Run.created_at, Run.finished_at, Run.cost_per_million_tokens_at_slo,
                   Run.output_tokens_per_s_at_slo, Run.quality_degraded, synthetic, imported)
            .where(where)
            .order_by(Run.created_at, Run.id)
        )  # fmt: skip
        for row in rows:
            add(
                row.endpoint_id,
                row.synthetic,
                TrendPoint.model_construct(  # the database's own columns: nothing to validate
                    run_id=row.id,
                    at=row.finished_at or row.created_at,
                    cost_per_million_tokens=row.cost_per_million_tokens_at_slo,
                    output_tokens_per_s=row.output_tokens_per_s_at_slo,
                    degraded=row.quality_degraded,
                    synthetic=bool(row.synthetic),
                    imported=int(bool(row.imported)),
                ),
            )
    else:
        width = dict(GRAINS)[grain]
        for row in await session.execute(_bucket_query(session, where, width)):
            cost = {q: getattr(row, f"p{q}") for q in QUANTILES}
            add(
                row.endpoint_id,
                row.synthetic,
                TrendPoint.model_construct(
                    run_id=row.first_id if row.runs == 1 else None,
                    at=bucket_start(int(row.b), width),
                    runs=int(row.runs),
                    cost_per_million_tokens=cost[50] if row.priced else None,
                    cost_p10=cost[10] if row.priced else None,
                    cost_p90=cost[90] if row.priced else None,
                    output_tokens_per_s=row.tps,
                    degraded=bool(row.degraded),
                    synthetic=bool(row.synthetic),
                    imported=int(row.imported or 0),
                ),
            )
    ordered = sorted(
        series.values(), key=lambda s: (names[s.endpoint_id].lower(), s.endpoint_id, not s.synthetic)
    )
    return grain, ordered


def _bucket_query(session: AsyncSession, where: ColumnElement[bool], width: int) -> Any:
    dialect = session.get_bind().dialect.name
    keys = (Run.endpoint_id, Run.source == RunSource.synthetic.value, _bucket(dialect, width))
    cost = Run.cost_per_million_tokens_at_slo
    ranked = (
        select(
            Run.id,
            Run.endpoint_id,
            (Run.source == RunSource.synthetic.value).label("synthetic"),
            keys[2].label("b"),
            cost.label("v"),
            Run.output_tokens_per_s_at_slo.label("tps"),
            Run.quality_degraded.label("d"),
            Run.source.not_in(OWN_SOURCES).label("imp"),
            # Unpriced runs rank after the priced ones and are left out of the quantiles.
            (func.row_number().over(partition_by=keys, order_by=(cost.is_(None), cost)) - 1).label("i"),
            func.count(cost).over(partition_by=keys).label("n"),
        )
        .where(where)
        .subquery()
    )

    def quantile(q: int) -> ColumnElement[Any]:
        # Linear interpolation between closest ranks: h = q (n - 1) / 100, x[lo] + (h - lo)(x[lo+1] - x[lo]).
        scaled = q * (ranked.c.n - 1)
        lo = scaled // 100
        frac = cast(scaled - lo * 100, Float) / 100.0
        return func.sum(
            case(
                (ranked.c.i == lo, ranked.c.v * (1.0 - frac)),
                (and_(ranked.c.i == lo + 1, frac > 0), ranked.c.v * frac),
                else_=0.0,
            )
        ).label(f"p{q}")

    return (
        select(
            ranked.c.endpoint_id,
            ranked.c.synthetic,
            ranked.c.b,
            func.count().label("runs"),
            func.max(ranked.c.n).label("priced"),
            func.min(ranked.c.id).label("first_id"),
            func.avg(ranked.c.tps).label("tps"),
            func.sum(case((ranked.c.d, 1), else_=0)).label("degraded"),
            func.sum(case((ranked.c.imp, 1), else_=0)).label("imported"),
            *(quantile(q) for q in QUANTILES),
        )
        .group_by(ranked.c.endpoint_id, ranked.c.synthetic, ranked.c.b)
        .order_by(ranked.c.endpoint_id, ranked.c.synthetic, ranked.c.b)
    )


async def markers(
    session: AsyncSession, *, profile: str, since: datetime, until: datetime, endpoints: list[tuple[int, str]]
) -> list[TrendMarker]:
    """Where an endpoint's prices or serving stack changed between consecutive runs."""
    ids = [endpoint_id for endpoint_id, _ in endpoints]
    if not ids:
        return []
    names = dict(endpoints)
    order = (Run.created_at, Run.id)
    seq = (
        select(
            Run.id,
            Run.endpoint_id,
            Run.created_at,
            Run.price_key,
            Run.stack_key,
            func.lag(Run.id).over(partition_by=Run.endpoint_id, order_by=order).label("prev_id"),
            func.lag(Run.price_key).over(partition_by=Run.endpoint_id, order_by=order).label("prev_price"),
            func.lag(Run.stack_key).over(partition_by=Run.endpoint_id, order_by=order).label("prev_stack"),
        )
        .where(in_range(profile, since, until), Run.endpoint_id.in_(ids))
        .subquery()
    )
    changed = (
        await session.execute(
            select(seq).where(
                or_(
                    and_(seq.c.prev_price.is_not(None), seq.c.price_key != seq.c.prev_price),
                    and_(seq.c.prev_stack.is_not(None), seq.c.stack_key != seq.c.prev_stack),
                )
            )
        )
    ).all()
    if not changed:
        return []
    wanted = {row.id for row in changed} | {row.prev_id for row in changed}
    snaps = {
        row.id: row
        for row in await session.execute(
            select(Run.id, Run.cost_snapshot, Run.endpoint_snapshot).where(Run.id.in_(wanted))
        )
    }
    kinds = (  # (kind, the run's key, the previous run's key, the snapshot that holds the fields, fields)
        ("price", "price_key", "prev_price", "cost_snapshot", PRICE_FIELDS),
        ("stack", "stack_key", "prev_stack", "endpoint_snapshot", STACK_FIELDS),
    )
    out = []
    for row in changed:
        before, after = snaps[row.prev_id], snaps[row.id]
        for kind, key, prev, snapshot, fields in kinds:
            if getattr(row, key) != getattr(row, prev):
                out.append(
                    TrendMarker(at=row.created_at, endpoint_id=row.endpoint_id, endpoint=names[row.endpoint_id],
                                kind=kind, run_id=row.id,
                                label=_change(getattr(before, snapshot), getattr(after, snapshot), fields))
                )  # fmt: skip
    return sorted(out, key=lambda m: (m.at, m.endpoint))


def _change(
    before: CostInputs | EndpointSnapshot | None,
    after: CostInputs | EndpointSnapshot | None,
    fields: tuple[str, ...],
) -> str:
    """What changed between two runs' snapshots (cost inputs or serving stack), field by field."""
    pairs = [(name, getattr(before, name, None), getattr(after, name, None)) for name in fields]
    parts = [
        f"{name.replace('_', ' ')} {_show(was)} → {_show(now)}" for name, was, now in pairs if was != now
    ]
    return "; ".join(parts) or "changed"


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


async def cost_trends(
    session: AsyncSession,
    *,
    profile: str,
    since: datetime,
    until: datetime,
    endpoint_ids: list[int] | None = None,
    location: str | None = None,
) -> CostTrends:
    """The trends page and `/api/v1/trends/cost`: the same series, buckets and markers (of one
    location's runs where `location` is given)."""
    picked, available = await pick_endpoints(
        session, profile=profile, since=since, until=until, wanted=endpoint_ids or []
    )
    grain, series = await cost_series(
        session, profile=profile, since=since, until=until, endpoints=picked, location=location
    )
    located = [ChangePoint.location == location] if location is not None else []
    return CostTrends(
        location=location,
        locations=await locations(session, profile=profile),
        since=since,
        until=until,
        profile=profile,
        grain=grain,
        series=series,
        markers=await markers(session, profile=profile, since=since, until=until, endpoints=picked),
        change_points=[
            changes.to_read(c)
            for c in (
                await session.scalars(
                    select(ChangePoint)
                    .where(
                        ChangePoint.profile_name == profile,
                        ChangePoint.metric == "cost_per_million_tokens_at_slo",
                        ChangePoint.endpoint_id.in_([endpoint_id for endpoint_id, _ in picked]),
                        ChangePoint.at >= since,
                        ChangePoint.at <= until,
                        *located,
                    )
                    .order_by(ChangePoint.at)
                )
            ).all()
        ],
        endpoints_shown=len(picked),
        endpoints_available=available,
    )


async def locations(session: AsyncSession, *, profile: str) -> list[str]:
    """The locations this profile's runs were measured from."""
    found = await session.scalars(select(Run.location).where(Run.profile_name == profile).distinct())
    return sorted(found.all())
