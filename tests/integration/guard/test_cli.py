"""``stalwart secrets`` and ``stalwart approvals``: values never echoed unless asked."""

from __future__ import annotations

import io
import json

from stalwart.cli import main
from stalwart.guard import ApprovalQueue


def test_secrets_set_get_rotate_list(tmp_path, monkeypatch, capsys) -> None:
    vault = ["--vault", str(tmp_path / "v.enc")]
    monkeypatch.setattr("sys.stdin", io.StringIO("first-value-123\n"))
    assert main(["secrets", "set", "model-key", *vault]) == 0
    assert main(["secrets", "get", "model-key", *vault]) == 0
    assert "first-value-123" not in capsys.readouterr().out
    assert main(["secrets", "get", "model-key", "--reveal", *vault]) == 0
    assert capsys.readouterr().out.strip() == "first-value-123"
    assert main(["secrets", "rotate", "model-key", *vault]) == 0
    out = capsys.readouterr().out
    assert "version 2" in out
    assert main(["secrets", "list", *vault]) == 0
    assert "model-key\tversion 2" in capsys.readouterr().out
    assert main(["secrets", "get", "missing", *vault]) == 1
    assert "stalwart secrets set missing" in capsys.readouterr().err


def test_approvals_list_approve_deny(tmp_path, capsys) -> None:
    store = f"sqlite:///{tmp_path}/s.db"
    queue = ApprovalQueue(store)
    a = queue.submit(
        task_id="t1", agent="resolver", tool="refund", reason="over the limit",
        arguments={"order_id": 1, "to": "ann@example.com"},
    )  # fmt: skip
    b = queue.submit(task_id="t2", agent="resolver", tool="send_email", arguments={}, reason="r")
    assert main(["approvals", "list", "--store", store, "--status", "pending"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["id"] for r in rows] == [a.id, b.id]
    assert rows[0]["arguments"]["to"] == "[REDACTED:email]"
    assert main(["approvals", "approve", a.id, "--store", store, "--by", "ann"]) == 0
    assert main(["approvals", "deny", b.id, "--store", store]) == 0
    assert queue.get(a.id).status == "approved" and queue.get(b.id).status == "denied"
    assert main(["approvals", "approve", b.id, "--store", store]) == 2
    assert "already denied" in capsys.readouterr().err
    queue.close()
