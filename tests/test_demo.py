"""`zqbo demo` is the README's first command: it must play through, offline."""

from __future__ import annotations

from bot.demo import run_demo


def test_demo_plays_the_whole_story():
    lines: list[str] = []
    run_demo(pause=0, echo=lines.append)
    out = "\n".join(lines)
    assert "never connected" in out
    assert "Connected, but not as the dedicated user" in out
    assert "wrong identity" in out
    assert "not the dedicated user" in out  # the checklist's red step 4
    assert "Connected to Acme Payments Ltd as zomentum.integration@acme.example — the dedicated user" in out
    assert "Automated entries logged under a person" in out and "Payment ZP-1001" in out
    assert "Resolved: Automated entries logged under a person" in out
    assert "Payment ZP-1004 was logged under the dedicated user" in out
    assert out.rstrip().endswith("then `zqbo serve`.")
