"""benchmarks/tv_frontier.py's ranking: the settings by their worst margin over neural-style."""

import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _row(pair, alpha, tv, content, style, tv_value):
    return {"pair": pair, "content_weight": alpha, "tv_weight": tv, "seconds": None if
            tv is None else 60.0, "content": content, "style": style, "tv": tv_value}


def test_the_ranking_puts_the_setting_that_beats_every_reference_by_most_first():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import tv_frontier
    rows = [_row("a", None, None, 0.5, 0.1, 100), _row("b", None, None, 0.6, 0.08, 200),
            # 3, 0.005: 10% under on a, 5% under b's style (its worst); passes both
            _row("a", 3.0, 0.005, 0.45, 0.09, 90), _row("b", 3.0, 0.005, 0.5, 0.076, 150),
            # 3, 0: a's TV 20% over
            _row("a", 3.0, 0.0, 0.4, 0.05, 120), _row("b", 3.0, 0.0, 0.5, 0.07, 190),
            # 4, 0.005: passes, its worst 1% (a's style)
            _row("a", 4.0, 0.005, 0.4, 0.099, 80), _row("b", 4.0, 0.005, 0.5, 0.07, 100)]
    lines = tv_frontier.ranking(rows).splitlines()[1:]
    assert lines == ["  content weight 3, TV weight 0.005: +5.0%",
                     "  content weight 4, TV weight 0.005: +1.0%",
                     "  content weight 3, TV weight 0: -20.0%"]
    table = tv_frontier.markdown(rows).splitlines()
    assert table[2] == "| a | neural-style | (published) | - | 0.500 | 0.100 | 100 |"
    assert table[5] == "| b | 3 | 0.005 | 60 | 0.500 | 0.076 | 150 |"
