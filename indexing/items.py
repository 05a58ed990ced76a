"""What a gallery holds per item (`Item`) and what a search returns per neighbour (`Hit`)."""

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

TLabel = Union[int, str, None]


def check_label(label: Any) -> TLabel:
    """`label` as None, an int or a str (numpy/torch scalars and integral floats are unwrapped); else ValueError."""
    if label is None or isinstance(label, str):
        return label
    if isinstance(label, bool):
        raise ValueError(f"label must be an integer or a string, got {label!r}")
    if hasattr(label, "item") and not isinstance(label, (list, dict)):
        label = label.item()  # numpy / torch scalars
    if isinstance(label, float) and label.is_integer():
        label = int(label)
    if not isinstance(label, (int, str)):
        raise ValueError(f"label must be an integer or a string, got {label!r}")
    return label


@dataclass
class Item:
    """One gallery item: a unique external `key`, an optional `label`, the `path` or `text` it was embedded from,
    and a JSON `payload` returned with every hit.

    `content_hash` identifies the content; bulk indexing skips an item whose key is stored with the same hash.
    It defaults to a hash of the fields plus `fingerprint` (e.g. a file's size and mtime).
    """

    key: str
    label: TLabel = None
    path: Optional[str] = None
    text: Optional[str] = None
    payload: Dict[str, Any] = field(default_factory=dict)
    fingerprint: Optional[str] = None
    content_hash: Optional[str] = None

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not self.key:
            raise ValueError(f"item key must be a non-empty string, got {self.key!r}")
        self.label = check_label(self.label)
        if self.path is not None:
            self.path = str(self.path)
        if self.text is not None and not isinstance(self.text, str):
            raise ValueError(f"item {self.key!r}: text must be a string, got {type(self.text).__name__}")
        if self.payload is None:
            self.payload = {}
        if not isinstance(self.payload, dict):
            raise ValueError(f"item {self.key!r}: payload must be a JSON object, got {type(self.payload).__name__}")
        try:
            self.payload_json = json.dumps(self.payload, sort_keys=True, ensure_ascii=False)
        except (TypeError, ValueError) as error:
            raise ValueError(f"item {self.key!r}: payload is not JSON-serialisable: {error}") from error
        if self.content_hash is None:
            content = json.dumps([self.key, self.label, self.path, self.text, self.payload_json, self.fingerprint])
            self.content_hash = hashlib.sha256(content.encode("utf-8")).hexdigest()


@dataclass
class StoredItem:
    """An item as the store keeps it, with its internal id."""

    item_id: int
    key: str
    label: TLabel
    path: Optional[str]
    text: Optional[str]
    payload: Dict[str, Any]
    content_hash: str

    def to_dict(self) -> Dict[str, Any]:
        return {
            "item_id": self.item_id,
            "key": self.key,
            "label": self.label,
            "path": self.path,
            "text": self.text,
            "payload": self.payload,
        }


@dataclass
class Hit:
    """One search result: the item's key, label, Euclidean distance to the query, payload, internal id and source."""

    key: str
    label: TLabel
    distance: float
    payload: Dict[str, Any]
    item_id: int
    path: Optional[str] = None
    text: Optional[str] = None

    def to_dict(self) -> Dict[str, Any]:
        return {
            "key": self.key,
            "label": self.label,
            "distance": self.distance,
            "payload": self.payload,
            "item_id": self.item_id,
            "path": self.path,
            "text": self.text,
        }


__all__ = ["Item", "StoredItem", "Hit", "TLabel", "check_label"]


def upsert_rows(items: Sequence[Any], vectors: Any) -> Tuple[List["Item"], List[int]]:
    """The items of an upsert and the positions to store: the last occurrence of each key (a later row replaces an
    earlier one in the same call). Raises if the counts differ or an entry is not an `Item`."""
    items = list(items)
    if len(items) != vectors.shape[0]:
        raise ValueError(f"{len(items)} items but {vectors.shape[0]} embeddings")
    for item in items:
        if not isinstance(item, Item):
            raise TypeError(f"items must be indexing.Item, got {type(item).__name__}")
    last = {item.key: position for position, item in enumerate(items)}
    return items, sorted(last.values())
