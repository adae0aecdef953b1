"""Wire schemas: what the API accepts and returns (kept apart from the index's own types)."""

from __future__ import annotations

from typing import Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, model_validator

Target = Literal["video", "audio"]
DistanceName = Literal["interp", "softdtw", "dtw", "wasserstein"]


class Filters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_duration_s: float | None = Field(default=None, ge=0)
    max_duration_s: float | None = Field(default=None, ge=0)
    has_audio: bool | None = None
    has_video: bool | None = None
    tags: list[str] = Field(
        default_factory=list, max_length=32, description="Every tag must match."
    )
    min_av_agreement: float | None = Field(
        default=None,
        description="Only items whose sound agrees with their picture at least this much "
        "(see Hit.av_agreement); items without sound or picture never pass. Refused (422) by an "
        "index whose model was not trained to match sound with picture.",
    )

    @model_validator(mode="after")
    def _range(self) -> Filters:
        lo, hi = self.min_duration_s, self.max_duration_s
        if lo is not None and hi is not None and lo > hi:
            raise ValueError("min_duration_s is larger than max_duration_s")
        return self


class SearchOptions(BaseModel):
    """Options shared by every search; the upload routes take them as form fields."""

    model_config = ConfigDict(extra="forbid")

    target: Target = Field("video", description="What to find: videos or audio tracks.")
    k: int = Field(10, ge=1, le=1000, description="Hits per page.")
    offset: int = Field(0, ge=0, le=10_000, description="Hits to skip (pagination).")
    rerank: bool | None = Field(
        None,
        description="Re-rank the first pass by sequence distance. Default: the index's measured "
        "default for this direction (on only where the model's validation showed it helps).",
    )
    rerank_k: int = Field(100, ge=1, le=10_000, description="Candidates the re-rank looks at.")
    distance: DistanceName = "interp"
    weights: dict[Literal["visual", "audio"], float] | None = Field(
        None,
        description="Fusion weight of each index (default depends on query and target; text "
        "searching videos: the audio index's share measured on the model's validation split).",
    )
    filters: Filters = Field(default_factory=lambda: Filters())

    @model_validator(mode="after")
    def _weights(self) -> SearchOptions:
        if self.weights is not None:
            if any(not (0 <= w <= 1e3) for w in self.weights.values()):
                raise ValueError("weights must be between 0 and 1000")
            if not any(w > 0 for w in self.weights.values()):
                raise ValueError("at least one weight must be positive")
        return self


class TextSearchRequest(SearchOptions):
    query: str = Field(min_length=1, max_length=1000, description="What to look for, in words.")

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"query": "a small red ball bounces on grass", "target": "video", "k": 10},
                {
                    "query": "a dog barks twice",
                    "target": "audio",
                    "k": 5,
                    "filters": {"max_duration_s": 30},
                },
            ]
        },
    )


def item_urls(item_id: str, has_video: bool) -> dict[str, str | None]:
    """Where an item's media and thumbnail are served (ids are quoted: they may hold anything)."""
    base = f"/v1/items/{quote(item_id, safe='')}"
    return {
        "media_url": f"{base}/media",
        "thumbnail_url": f"{base}/thumbnail" if has_video else None,
    }


class Hit(BaseModel):
    id: str
    score: float = Field(
        description="Ranking score: the pooled score, or after a re-rank the pooled score plus "
        "the index's recorded weight × the aligned window's mean step similarity (or minus the "
        "sequence distance where no weight is recorded)."
    )
    pooled_score: float = Field(description="First-pass (pooled vector) score.")
    start_s: float = Field(description="Start of the best-matching segment, seconds.")
    end_s: float = Field(description="End of the best-matching segment, seconds.")
    timeline: list[float] = Field(description="Per-step match score over the item (4 per second).")
    steps_per_second: float
    title: str | None
    duration_s: float | None
    has_audio: bool
    has_video: bool
    media_url: str
    thumbnail_url: str | None
    av_agreement: float | None = Field(
        None,
        description="How clearly the item's own sound fits its picture: the best lag's mean step "
        "similarity above the median over lags of ±1.5 s (about 0 = no sign of sync: another "
        "track, or nothing to see of what is heard). None: no sound or no picture, or an index "
        "without agreement.",
    )
    audio_offset_s: float | None = Field(
        None,
        description="By how much the item's sound lags its picture at the best lag (negative: it "
        "comes early); meaningful where av_agreement is high.",
    )
    landmark_votes: int | None = Field(
        None,
        description="The uploaded sound is a piece of this item's recording: how many of its "
        "landmark pairs (spectral peaks, `models.fingerprint`) agree on where it was cut from, "
        "which is start_s. Such items come first. None: not found that way.",
    )
    print_ber: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="The uploaded sound is a piece of this item's recording by its dense prints "
        "(32 band-energy bits every 64 ms, `models.prints`): the share of bits that differ at "
        "the place found, which is start_s (a piece of the same file: about 0.02-0.12; another "
        "encoding of it: up to 0.2). Such items come first, fewest bits wrong first. None: not "
        "found that way.",
    )


class ReadValue(BaseModel):
    value: str = Field(description='A value of the attribute, e.g. "bell" of the kind.')
    probability: float = Field(ge=0.0, le=1.0, description="How sure the reader is of it.")


class SearchResponse(BaseModel):
    hits: list[Hit]
    offset: int
    k: int
    index_version: str
    query_duration_s: float | None = Field(None, description="Length of an uploaded query.")
    timings_ms: dict[str, float] = Field(
        description="Per stage: decode, encode, search, rerank, landmarks, prints, segments, total."
    )
    reranked: bool = Field(False, description="Whether the sequence re-rank ordered the hits.")
    localised: bool = Field(
        True,
        description="Whether each hit's start_s/end_s come from aligning time steps; false: the "
        "model's sequence heads cannot align this kind of query (untrained), so a hit's segment is "
        "the whole item and its timeline is empty.",
    )
    read_as: dict[str, list[ReadValue]] | None = Field(
        None,
        description="A text query: what the sentence was read to name, for each attribute that "
        "weighed in this search (where the index's measured policy leans the search toward "
        "pictures that show it, or re-ranks by how far the sentence and each candidate agree on "
        "it, or on what is heard): its values read with probability at least 0.5, likeliest "
        "first; an empty list: none read. A word read wrongly shows here, so it can be put "
        "another way. None: no reading weighed in (an upload, a checkpoint without fitted "
        "readers, or a policy that uses none).",
    )

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "hits": [
                        {
                            "id": "clip000042",
                            "score": 0.61,
                            "pooled_score": 0.61,
                            "start_s": 1.5,
                            "end_s": 3.25,
                            "timeline": [0.1, 0.2, 0.6, 0.7, 0.6, 0.2],
                            "steps_per_second": 4.0,
                            "title": "red ball, meadow",
                            "duration_s": 6.0,
                            "has_audio": True,
                            "has_video": True,
                            "media_url": "/v1/items/clip000042/media",
                            "thumbnail_url": "/v1/items/clip000042/thumbnail",
                        }
                    ],
                    "offset": 0,
                    "k": 10,
                    "index_version": "v000003-20261122T060000Z",
                    "timings_ms": {"encode": 6.1, "search": 0.4, "segments": 0.3, "total": 7.2},
                    "read_as": {
                        "kind": [{"value": "ball", "probability": 0.93}],
                        "colour": [{"value": "red", "probability": 0.99}],
                    },
                }
            ]
        }
    )


class Item(BaseModel):
    id: str
    title: str | None
    duration_s: float | None
    has_audio: bool
    has_video: bool
    meta: dict
    media_url: str
    thumbnail_url: str | None


class IndexInfo(BaseModel):
    version: str
    created_utc: str
    items: int
    counts: dict
    dim: int
    steps_per_second: float
    factories: dict[str, str]
    sequence_codec: str
    model_hash: str
    search_policy: dict = Field(
        description="The model's re-rank defaults per direction, with the validation figures "
        "behind them; `recorded` false for an index built before policies existed."
    )


class ErrorDetail(BaseModel):
    code: str = Field(description="Machine-readable, stable.", examples=["unsupported_media"])
    message: str
    detail: object | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail
