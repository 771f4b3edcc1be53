"""benchmarks/accelerator_suite.py runs every benchmark at tiny sizes on the CPU."""

import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_the_suite_runs_every_benchmark_and_writes_json_and_markdown(tmp_path, vgg_weights):
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "accelerator_suite.py"),
                           f"--out={tmp_path}", "--mode=tiny"], capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import accelerator_suite
    suite = json.loads((tmp_path / "suite.json").read_text())
    assert [b["name"] for b in suite["benchmarks"]] == list(accelerator_suite.BENCHMARKS)
    for bench in suite["benchmarks"]:
        assert bench["returncode"] == 0 and bench["lines"], bench["name"]
    markdown = (tmp_path / "suite.md").read_text()
    assert markdown.count("### ") == len(accelerator_suite.BENCHMARKS)
    assert "| 32 | adam |" in markdown  # the Gatys step's row
