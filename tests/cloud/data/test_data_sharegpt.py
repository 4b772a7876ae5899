"""ShareGPT stream parsing: the truncated packaged file, roles, and a split that never cuts a conversation."""

from __future__ import annotations

import json

import pytest

from tether.cloud.data import sharegpt


def test_stream_parse_stops_at_a_truncated_tail(tmp_path) -> None:
    convs = [
        {
            "id": f"c{i}_0",
            "conversations": [
                {"from": "human", "value": f"q{i} \u00e9\U0001f642"},
                {"from": "gpt", "value": "a" * (i * 1000)},
            ],
        }
        for i in range(5)
    ]
    text = json.dumps(convs, indent=2)
    cut = text.index('"c4_0"') + 40  # inside the last conversation, as in the packaged file
    path = tmp_path / "part.json"
    path.write_bytes(text[:cut].encode())
    got = list(sharegpt.iter_conversations(path, chunk_chars=64))  # tiny chunks: objects span many reads
    assert [c.id for c in got] == ["c0_0", "c1_0", "c2_0", "c3_0"]
    assert got[1].turns == (
        sharegpt.Turn("user", "q1 \u00e9\U0001f642"),
        sharegpt.Turn("assistant", "a" * 1000),
    )
    path.write_text(text)
    assert len(list(sharegpt.iter_conversations(path))) == 5  # a complete file ends at its ']'


def test_the_packaged_corpus() -> None:
    first = sharegpt.load("all", limit=200)
    assert len(first) == 200 and first[0].id == "QWJhYvA_0"
    assert all(t.role in ("user", "assistant", "system") for c in first for t in c.turns)
    assert first[0].messages()[0] == {"role": "user", "content": first[0].turns[0].text}
    multi = sharegpt.load("train", min_turns=4, limit=50)
    assert len(multi) == 50 and all(len(c.turns) >= 4 for c in multi)


def test_split_is_by_conversation_and_deterministic() -> None:
    train = sharegpt.load("train", limit=3000)
    val = sharegpt.load("val", limit=150)
    assert not {c.base_id for c in train} & {c.base_id for c in val}
    assert sharegpt.load("val", limit=150) == val
    assert (
        sharegpt.Conversation("abc_12", ()).base_id == "abc" and sharegpt.Conversation("x", ()).base_id == "x"
    )
    with pytest.raises(ValueError, match="val_fraction"):
        sharegpt.load("train", val_fraction=0.0)
