"""Reading and writing contract folders: formats agree, writes are atomic."""

from __future__ import annotations

import pandas as pd
import pytest

from cdp.errors import BadInputError
from cdp.io import atomic_folder
from cdp.validation import load_contract
from conftest import tiny_tables, write_folder


def test_csv_and_parquet_load_to_identical_frames(small_world, tmp_path):
    parquet = load_contract(write_folder(small_world.tables, tmp_path / "p", "parquet"))
    csv = load_contract(write_folder(small_world.tables, tmp_path / "c", "csv"))
    for name, frame in parquet.items():
        pd.testing.assert_frame_equal(frame, getattr(csv, name), check_exact=True, obj=name)


def test_mixed_formats_in_one_folder(tmp_path):
    tables = tiny_tables()
    folder = write_folder({k: v for k, v in tables.items() if k != "orders"}, tmp_path / "d")
    write_folder({"orders": tables["orders"]}, folder, "csv")
    assert len(load_contract(folder).orders) == 4


def test_atomic_folder_leaves_nothing_when_the_block_fails(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError), atomic_folder(out) as tmp:
        (tmp / "customers.parquet").write_text("half")
        raise RuntimeError("crash while writing")
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_folder_refuses_a_non_empty_folder_and_keeps_it(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(BadInputError, match="not empty"), atomic_folder(out):
        pass
    assert (out / "keep.txt").read_text() == "mine"


def test_atomic_folder_replaces_with_overwrite(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with atomic_folder(out, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in out.iterdir()] == ["new.txt"]


def test_a_killed_writer_leaves_no_output_and_the_next_run_cleans_up(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "snapshot"
    script = (
        "import time, sys\n"
        "from cdp.io import atomic_folder\n"
        f"with atomic_folder({str(out)!r}) as tmp:\n"
        "    (tmp / 'customers.parquet').write_text('half')\n"
        "    print('writing', flush=True)\n"
        "    time.sleep(60)\n"
    )
    writer = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "writing"
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=10)
    time.sleep(0.1)
    assert not out.exists()
    assert len(list(tmp_path.glob(".snapshot.tmp-*"))) == 1  # the killed writer's leftovers

    with atomic_folder(out) as tmp:
        (tmp / "customers.parquet").write_text("whole")
    assert (out / "customers.parquet").read_text() == "whole"
    assert list(tmp_path.glob(".snapshot.tmp-*")) == []
