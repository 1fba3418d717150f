"""benchmarks/bench_utils.py: the helpers every benchmark script shares."""

import json

from benchmarks import bench_utils


def test_timed_rounds_interleaves_rotates_and_skips_the_warmup():
    calls = []
    cases = {name: (lambda n=name: calls.append(n)) for name in "abc"}
    times = bench_utils.timed_rounds(cases, rounds=2, warmup=True, rotate=True)
    assert calls == list("abc" + "bca" + "cab")  # round 0 is the untimed warm-up
    assert all(len(t["wall"]) == len(t["cpu"]) == 2 for t in times.values())
    calls.clear()
    bench_utils.timed_rounds(cases, rounds=1, repeats=2)
    assert calls == list("aabbcc")


def test_a_case_may_report_its_own_seconds():
    times = bench_utils.timed_rounds({"worker": lambda: 12.5, "array": lambda: [1.0]}, rounds=2)
    assert times["worker"]["wall"] == [12.5, 12.5]  # e.g. measured in a worker process
    assert all(0 <= t < 1 for t in times["array"]["wall"])  # not a float: timed here


def test_write_json_and_machine(tmp_path, capsys):
    path = tmp_path / "results" / "x.json"
    bench_utils.write_json(path, {"b": 1, "a": float("nan")}, sort_keys=True)
    assert list(json.loads(path.read_text())) == ["a", "b"]
    assert "wrote" in capsys.readouterr().out
    assert [p.name for p in path.parent.iterdir()] == ["x.json"]  # no temporary left
    assert "cores visible" in bench_utils.machine() and len(bench_utils.load_average()) == 3
