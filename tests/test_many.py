"""Many scans, many processes: ``solve_many`` and the CLI over a folder of scans, alone and as two gloo ranks.

Ground truth: two processes sharing three scans write byte-identical outputs to one process; a failing scan fails
the run with one line and leaves nothing in the output folder (no partial outputs, no staging folders).
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from _synth import line_mask, one_error_line, ramp_phantom_scan, tiny_model, two_ranks
from medscore.api import solve_many
from medscore.cli.main import app
from medscore.errors import InputError, MedscoreError
from medscore.pipeline.many import RUNS_FILE, list_scans
from medscore.solvers import SamplerOptions

TESTS = Path(__file__).parent
SHAPE = (20, 24, 3)
FAST = SamplerOptions(preset="fast", num_levels=3, seed=1)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("many")
    scans = root / "scans"
    for i, name in enumerate(("a", "b", "c")):
        ramp_phantom_scan(scans / f"{name}.nii.gz", SHAPE, seed=10 + i)
    return {"root": root, "scans": scans, "model": tiny_model(root / "tiny"),
            "mask": line_mask(root / "lines.npy", SHAPE[1], slice(10, 14))}


def _outputs(folder: Path) -> dict[str, bytes]:
    """Every NIfTI and picture in ``folder`` by name (the runs file aside: it records timings)."""
    return {p.name: np.asarray(nib.load(str(p)).dataobj).tobytes() if p.name.endswith(".nii.gz") else p.read_bytes()
            for p in sorted(folder.iterdir()) if p.name != RUNS_FILE}


def _single(data, out: Path) -> list[dict]:
    return solve_many("mri", [data["scans"]], out, mask=data["mask"], model=data["model"], opts=FAST, device="cpu")


def test_a_folder_of_scans_is_solved_into_one_folder_with_a_report(data, tmp_path):
    reports = _single(data, tmp_path / "out")
    assert [Path(r["scan"]).name for r in reports] == ["a.nii.gz", "b.nii.gz", "c.nii.gz"]
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert "a_medscore.nii.gz" in files and "c_medscore_panel.png" in files and RUNS_FILE in files
    assert not [f for f in files if f.startswith(".")]  # the staging folder is gone
    info = json.loads((tmp_path / "out" / RUNS_FILE).read_text())
    assert info["world_size"] == 1 and len(info["scans"]) == 3
    for r in info["scans"]:
        assert r["slices"] == SHAPE[2] and "psnr" in r["metrics"]["medscore"]
    with pytest.raises(InputError, match="exists"):  # a second run into the same folder never overwrites
        _single(data, tmp_path / "out")


def test_scan_lists_and_their_checks(data, tmp_path):
    assert list_scans([data["scans"] / "b.nii.gz", data["scans"]])[0].name == "b.nii.gz"
    with pytest.raises(InputError, match="same output"):
        solve_many("mri", [data["scans"] / "a.nii.gz", data["scans"] / "a.nii.gz"], tmp_path / "o",
                   mask=data["mask"], model=data["model"], opts=FAST)
    with pytest.raises(InputError, match="not found"):
        list_scans([tmp_path / "missing.nii.gz"])


_WORKER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    from medscore.api import solve_many
    from medscore.errors import MedscoreError
    from medscore.solvers import SamplerOptions

    try:
        solve_many("mri", [{scans!r}], {out!r}, mask={mask!r}, model={model!r},
                   opts=SamplerOptions(preset="fast", num_levels=3, seed=1), device="cpu")
    except MedscoreError as exc:
        print("error:", exc)
        sys.exit(1)
""")


def test_two_gloo_ranks_write_what_one_process_writes(data, tmp_path):
    _single(data, tmp_path / "one")
    script = tmp_path / "worker.py"
    script.write_text(_WORKER.format(tests=str(TESTS), scans=str(data["scans"]), out=str(tmp_path / "two"),
                                     mask=str(data["mask"]), model=str(data["model"])))
    for code, log in two_ranks(script):
        assert code == 0, log[-3000:]
    assert _outputs(tmp_path / "two") == _outputs(tmp_path / "one")
    info = json.loads((tmp_path / "two" / RUNS_FILE).read_text())
    assert info["world_size"] == 2 and [Path(r["scan"]).name for r in info["scans"]] == ["a.nii.gz", "b.nii.gz",
                                                                                          "c.nii.gz"]


def test_a_failing_scan_fails_both_ranks_and_leaves_nothing(data, tmp_path):
    scans = tmp_path / "scans"
    scans.mkdir()
    for name in ("a", "b"):
        (scans / f"{name}.nii.gz").write_bytes((data["scans"] / f"{name}.nii.gz").read_bytes())
    # a valid header, values the scan reader refuses: found by rank 0 (a and c; rank 1 solves b) while solving
    nib.save(nib.Nifti1Image(np.full(SHAPE, np.nan, dtype=np.float32), np.eye(4)), str(scans / "c.nii.gz"))
    script = tmp_path / "worker.py"
    script.write_text(_WORKER.format(tests=str(TESTS), scans=str(scans), out=str(tmp_path / "out"),
                                     mask=str(data["mask"]), model=str(data["model"])))
    results = two_ranks(script)
    assert all(code == 1 for code, _ in results), [log[-2000:] for _, log in results]
    assert all("c.nii.gz" in log.strip().splitlines()[-1] for _, log in results)
    assert list((tmp_path / "out").iterdir()) == []


def test_cli_over_a_folder_fails_with_one_line_and_writes_nothing(data, tmp_path):
    scans = tmp_path / "scans"
    scans.mkdir()
    (scans / "a.nii.gz").write_bytes((data["scans"] / "a.nii.gz").read_bytes())
    (scans / "z.nii.gz").write_bytes(b"broken")
    runner = CliRunner()
    base = ["reconstruct", str(scans), "--mask", str(data["mask"]), "--model", str(data["model"]),
            "--preset", "fast", "--device", "cpu"]
    assert "-o/--out FOLDER" in one_error_line(runner.invoke(app, base))
    res = runner.invoke(app, [*base, "-o", str(tmp_path / "out")])
    assert "z.nii.gz" in one_error_line(res)
    assert not (tmp_path / "out").exists()  # refused from the headers, before the output folder is made
    (scans / "z.nii.gz").unlink()
    ok = runner.invoke(app, [*base, "-o", str(tmp_path / "out")])
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / "out" / "a_medscore.nii.gz").is_file()


def test_a_medscore_error_is_what_a_failing_scan_raises(data, tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "w.nii.gz").write_bytes((data["scans"] / "a.nii.gz").read_bytes())
    nib.save(nib.Nifti1Image(np.full(SHAPE, np.nan, dtype=np.float32), np.eye(4)), str(tmp_path / "s" / "x.nii.gz"))
    with pytest.raises(MedscoreError, match="x.nii.gz"):
        solve_many("mri", [tmp_path / "s"], tmp_path / "o", mask=data["mask"], model=data["model"], opts=FAST)
    assert list((tmp_path / "o").iterdir()) == []
