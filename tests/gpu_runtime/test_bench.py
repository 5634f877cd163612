"""The engine benchmark runs end to end at its scaled-down CPU shape, whole or split in parts.

A benchmark is a script, not a test: nothing here checks a timing. These tests keep the script
working where it is usually run only on a GPU, and check that a split run adds up to one table.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpu_runtime import bench


def run_bench(tmp_path: Path, name: str, *args: str) -> dict[str, object]:
    out = tmp_path / f"{name}.json"
    bench.main(["--small", "--no-compile", "--repeats", "1", "--steps", "2", "--json", str(out), *args])
    return json.loads(out.read_text())


def test_a_run_split_in_parts_adds_up_to_one_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    naive = run_bench(tmp_path, "naive", "--parts", "naive")
    assert "ours_job_s" not in naive
    assert naive["naive_job_s"] > 0
    assert naive["unet_tflop"] > 0 and naive["controlnet_tflop"] > 0
    assert "2 steps" in str(naive["shape"])

    ours = run_bench(tmp_path, "ours", "--parts", "ours", "--compare", str(tmp_path / "naive.json"))

    assert ours["ours_job_s"] > 0 and ours["ours_gpu_s"] > 0
    assert ours["naive_job_s"] == naive["naive_job_s"]
    assert ours["speedup"] == pytest.approx(naive["naive_job_s"] / ours["ours_job_s"])
    assert ours["lora_switch_p50_ms"] > 0 and ours["lora_recompiles"] is None
    assert ours["graphs_after_all_jobs"] == 0
    printed = capsys.readouterr().out
    assert "naive: plain pipeline x5 (earlier run)" in printed
    assert "speed-up, ours vs naive" in printed


def test_an_earlier_run_of_another_shape_is_refused(tmp_path: Path) -> None:
    run_bench(tmp_path, "naive", "--parts", "naive")
    with pytest.raises(SystemExit, match="not 'scaled-down"):
        run_bench(
            tmp_path, "ours", "--parts", "naive", "--steps", "3", "--compare", str(tmp_path / "naive.json")
        )


def test_unknown_parts_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        bench.main(["--parts", "ours,warp"])
    assert "parts are ours, eager, naive" in capsys.readouterr().err
