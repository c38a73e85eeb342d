"""One process per data directory (issue 21): the lock is exclusive and names its holder."""

from __future__ import annotations

import os

import pytest

from civicbot.storage.data_lock import DataDirInUse, DataDirLock


def test_second_lock_on_one_data_dir_fails_at_once_naming_the_holder(tmp_path):
    with DataDirLock(tmp_path):
        with pytest.raises(DataDirInUse) as refused:
            DataDirLock(tmp_path).acquire()
    assert refused.value.pid == str(os.getpid())
    assert f"pid {os.getpid()}" in str(refused.value)


def test_lock_is_free_again_once_released(tmp_path):
    first = DataDirLock(tmp_path)
    first.acquire()
    first.release()
    with DataDirLock(tmp_path):
        pass
