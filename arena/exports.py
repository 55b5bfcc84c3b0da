"""A comparison written out as JSON, Markdown or CSV (``GET /sessions/{id}/export``) and as the
read-only shared view (``GET /shared/{token}``). Model identity is withheld exactly as in the REST
session while a blind comparison is unrevealed."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Any

from arena.models import Vote
from comparisons.models import Comparison
from comparisons.schemas import SessionOut

FORMATS = {
    "json": "application/json",
    "md": "text/markdown; charset=utf-8",
    "csv": "text/csv; charset=utf-8",
}

CSV_COLUMNS = [
    "sessionId",
    "turn",
    "key",
    "provider",
    "modelName",
    "status",
    "content",
    "error",
    "durationInMilliseconds",
    "timeToFirstTokenInMilliseconds",
    "inputTokens",
    "outputTokens",
    "estimatedCost",
    "vote",
]


def vote_out(vote: Vote, *, hidden: bool) -> dict[str, Any]:
    """A vote as shown to its owner (or a share's viewer): no models while hidden."""
    return {
        "turn": vote.turn,
        "winner": vote.winner,
        "counted": vote.counted,
        "void": vote.void,
        "models": None if hidden else vote.slot_models,
        "createdAt": vote.created_at.isoformat(),
        "updatedAt": vote.updated_at.isoformat(),
    }


def comparison_document(
    *, comparison: Comparison, votes: Sequence[Vote], owner: bool = True
) -> dict[str, Any]:
    """The session JSON (masked while blind) with its votes; without ``userId`` unless ``owner``."""
    document: dict[str, Any] = SessionOut.from_orm(comparison).model_dump(
        by_alias=True, mode="json"
    )
    if not owner:
        document.pop("userId", None)
    hidden = comparison.identity_hidden
    document["votes"] = [vote_out(vote, hidden=hidden) for vote in votes]
    return document


def _cell(value: Any) -> str:
    """A CSV cell that a spreadsheet will not run as a formula (model output is untrusted)."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _as_csv(document: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    winners = {v["turn"]: v["winner"] for v in document["votes"]}
    for turn in document["turns"]:
        for slot in document["models"]:
            key = slot["key"]
            response = turn["responses"].get(key)
            if response is None:
                continue  # a follow-up without this model
            metrics = response.get("metrics") or {}
            row = [
                document["id"],
                turn["turn"],
                key,
                slot["provider"],
                slot["modelName"],
                response.get("status"),
                response.get("content"),
                response.get("error"),
                metrics.get("durationInMilliseconds"),
                metrics.get("timeToFirstTokenInMilliseconds"),
                metrics.get("inputTokens"),
                metrics.get("outputTokens"),
                metrics.get("estimatedCost"),
                winners.get(turn["turn"]),
            ]
            writer.writerow([_cell(value) for value in row])
    return out.getvalue()


def _as_markdown(document: dict[str, Any]) -> str:
    lines = [f"# Comparison {document['id']}", ""]
    lines.append(f"- Created: {document['createdAt']}")
    lines.append(f"- Status: {document['status']}")
    if document["blind"]:
        lines.append(f"- Blind: yes ({'revealed' if document['revealed'] else 'not revealed'})")
    for vote in document["votes"]:
        lines.append(f"- Vote (turn {vote['turn']}): {vote['winner']}")
    if document.get("system"):
        lines += ["", "## System", "", document["system"]]
    turns = document["turns"]
    for turn in turns:
        heading = "Prompt" if turn["turn"] == 0 else f"Turn {turn['turn']}"
        if turn["mode"] == "continueFrom":
            heading += f" (continued from {turn['from']})"
        lines += ["", f"## {heading}", "", turn["prompt"], ""]
        for slot in document["models"]:
            key = slot["key"]
            response = turn["responses"].get(key)
            if response is None:
                continue
            name = f"{slot['provider']}:{slot['modelName']}" if slot["provider"] else "hidden"
            level = "##" if len(turns) == 1 else "###"
            lines += [f"{level} {key} ({name})", ""]
            lines.append(response.get("content") or "")
            if response.get("error"):
                lines += ["", f"> Error: {response['error']}"]
            metrics = response.get("metrics")
            if metrics:
                lines += [
                    "",
                    f"_{metrics['durationInMilliseconds']:.0f} ms, {metrics['tokensUsed']} tokens_",
                ]
            lines.append("")
    return "\n".join(lines)


def comparison_export(*, document: dict[str, Any], format: str) -> str:
    """The document in ``format`` (one of :data:`FORMATS`)."""
    if format == "json":
        return json.dumps(document, ensure_ascii=False, indent=2)
    if format == "csv":
        return _as_csv(document)
    return _as_markdown(document)
