"""The context library: the best configuration found per context, in SQLite, reused when a context returns.

Entries are keyed by the specification's hash (its constraints, objective and knobs: a changed
specification never reuses configurations made for another) and the context fingerprint. An
entry keeps the configuration, its objective, whether it met the specification, the Optuna
study it came from (whose trials warm-start the tuner) and how often it was reused. An entry
that fails when reused is marked stale and replaced by the next tuning's result.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tether.edge.configbot.spec import Spec

__all__ = ["ContextLibrary", "LibraryEntry", "spec_hash"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS contexts (
    spec_hash   TEXT NOT NULL,
    spec_name   TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    config      TEXT NOT NULL,
    objective   REAL,
    feasible    INTEGER NOT NULL,
    study       TEXT,
    trials      INTEGER NOT NULL DEFAULT 0,
    stale       INTEGER NOT NULL DEFAULT 0,
    uses        INTEGER NOT NULL DEFAULT 0,
    updated     REAL NOT NULL,
    PRIMARY KEY (spec_hash, fingerprint)
)
"""


def spec_hash(spec: Spec) -> str:
    """A hash of what makes configurations comparable: constraints, objective, knobs, nodes."""
    doc = spec.model_dump(include={"constraints", "objective", "knobs", "nodes", "namespace"}, mode="json")
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class LibraryEntry:
    fingerprint: str
    config: dict[str, Any]
    objective: float | None
    feasible: bool
    study: str | None
    trials: int
    stale: bool
    uses: int
    updated: float


class ContextLibrary:
    """SQLite-backed; thread-safe (one connection guarded by a lock). `close()` releases the file."""

    def __init__(self, path: Path, spec: Spec) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.spec_hash = spec_hash(spec)
        self.spec_name = spec.name
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, timeout=30)
        self._db.execute(_SCHEMA)
        self._db.commit()

    def lookup(self, fingerprint: str, *, include_stale: bool = False) -> LibraryEntry | None:
        with self._lock:
            row = self._db.execute(
                "SELECT fingerprint, config, objective, feasible, study, trials, stale, uses, updated "
                "FROM contexts WHERE spec_hash = ? AND fingerprint = ?",
                (self.spec_hash, fingerprint),
            ).fetchone()
        if row is None:
            return None
        entry = LibraryEntry(
            row[0], json.loads(row[1]), row[2], bool(row[3]), row[4], row[5], bool(row[6]), row[7], row[8]
        )
        return entry if include_stale or not entry.stale else None

    def store(
        self,
        fingerprint: str,
        config: dict[str, Any],
        objective: float | None,
        feasible: bool,
        *,
        study: str | None = None,
        trials: int = 0,
        maximize: bool = True,
    ) -> bool:
        """Keep `config` for the context unless a fresh, feasible and better one is there; True when stored."""
        old = self.lookup(fingerprint, include_stale=True)
        if old is not None and not old.stale and old.feasible:
            if not feasible:
                return False
            worse = (
                objective is not None
                and old.objective is not None
                and (objective <= old.objective if maximize else objective >= old.objective)
            )
            if worse:
                return False
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO contexts (spec_hash, spec_name, fingerprint, config, objective, feasible, "
                "study, trials, stale, uses, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?)",
                (
                    self.spec_hash,
                    self.spec_name,
                    fingerprint,
                    json.dumps(config),
                    objective,
                    int(feasible),
                    study,
                    trials,
                    old.uses if old else 0,
                    time.time(),
                ),
            )
            self._db.commit()
        return True

    def mark_used(self, fingerprint: str) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE contexts SET uses = uses + 1 WHERE spec_hash = ? AND fingerprint = ?",
                (self.spec_hash, fingerprint),
            )
            self._db.commit()

    def invalidate(self, fingerprint: str) -> None:
        """The entry failed when reused: keep it for the record, never hand it out again until replaced."""
        with self._lock:
            self._db.execute(
                "UPDATE contexts SET stale = 1 WHERE spec_hash = ? AND fingerprint = ?",
                (self.spec_hash, fingerprint),
            )
            self._db.commit()

    def entries(self) -> list[LibraryEntry]:
        with self._lock:
            rows = self._db.execute(
                "SELECT fingerprint FROM contexts WHERE spec_hash = ? ORDER BY updated", (self.spec_hash,)
            ).fetchall()
        return [e for (fp,) in rows if (e := self.lookup(fp, include_stale=True)) is not None]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> ContextLibrary:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
