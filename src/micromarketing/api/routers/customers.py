"""Customers as segments of one: the profile view, recommendations and the next best offer."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel

from micromarketing.api.auth import Viewer
from micromarketing.api.deps import WS
from micromarketing.api.routers import plain
from micromarketing.workspace import SegmentOfOne  # the facade's result for ws.segment_of_one

router = APIRouter(prefix="/customers", tags=["customers"], dependencies=[Viewer])
CustomerId = Annotated[str, Path(min_length=1, max_length=128, description="the customer's id")]


class Recommendation(BaseModel):
    rank: int
    product_id: str
    score: float | None


class Recommendations(BaseModel):
    customer_id: str
    items: list[Recommendation]


class NextBestOffer(BaseModel):
    customer_id: str
    offer: str | None
    expected_margin: float | None
    propensity: float | None
    source: str | None


@router.get("/{customer_id}", response_model=SegmentOfOne, summary="Segment of one")
def get_customer(
    ws: WS,
    customer_id: CustomerId,
    orders: Annotated[int, Query(ge=0, le=100, description="recent orders to include")] = 10,
) -> Response:
    """The core's view serialised once, as it is (the hot path: no second validation of the
    response model)."""
    view = ws.segment_of_one(customer_id, orders=orders)
    return Response(view.model_dump_json(), media_type="application/json")


@router.get("/{customer_id}/recommendations", response_model=Recommendations, summary="Top products")
def recommendations(
    ws: WS, customer_id: CustomerId, k: Annotated[int, Query(ge=1, le=100)] = 5
) -> Recommendations:
    frame = ws.recommender.recommend([customer_id], k=k)
    rows = plain(frame[["rank", "product_id", "score"]].to_dict(orient="records"))
    return Recommendations(customer_id=customer_id, items=[Recommendation.model_validate(r) for r in rows])


@router.get("/{customer_id}/next-best-offer", response_model=NextBestOffer, summary="Next best offer")
def next_best_offer(ws: WS, customer_id: CustomerId) -> NextBestOffer:
    rows = plain(ws.offers.next_best([customer_id]).to_dict(orient="records"))
    return NextBestOffer.model_validate(rows[0])
