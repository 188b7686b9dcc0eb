"""experiments.benchmarks.video_attention: growth against the shortest clip and its table."""

from experiments.benchmarks.video_attention import add_growth, render


def _line(frames, kind, seconds, temp):
    tokens = frames // 2 * 64
    longest = tokens if kind == "joint" else 64
    return dict(
        frames=frames,
        kind=kind,
        tokens=tokens,
        longest_attention=longest,
        gflops=1.0,
        step_seconds=seconds,
        temp_bytes=temp,
    )


def test_growth_is_against_the_same_kinds_shortest_clip():
    lines = add_growth(
        [
            _line(8, "joint", 0.1, 10e6),
            _line(8, "factorised", 0.05, 4e6),
            _line(32, "joint", 1.6, 160e6),
            _line(32, "factorised", 0.2, 16e6),
        ]
    )
    assert [r["step_growth"] for r in lines] == [1.0, 1.0, 16.0, 4.0]
    assert [r["temp_growth"] for r in lines] == [1.0, 1.0, 16.0, 4.0]
    assert lines[2]["step_ms"] == 1600.0 and lines[2]["temp_mb"] == 160.0
    table = render(lines).splitlines()
    assert len(table) == 6
    assert table[4] == "| 32 | joint | 1024 | 1024 | 1600 | 16.0 | 1.00 | 160.0 | 16.0 |"
