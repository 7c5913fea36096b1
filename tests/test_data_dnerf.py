"""D-NeRF folder and npz importers, on the real lego data in ../shared/data."""

import json
from pathlib import Path

import numpy as np
import pytest

from loopnerf.data.dnerf import load_dnerf, load_dnerf_npz
from loopnerf.data.load import load_capture

from conftest import SHARED_DATA

VAL_DIR = SHARED_DATA / "dnerf_lego_val"
NPZ = SHARED_DATA / "dnerf_lego_tiny.npz"
needs_data = pytest.mark.shared_data("dnerf_lego_val", "dnerf_lego_tiny.npz")


@pytest.fixture(scope="module")
def val_white():
    return load_dnerf(VAL_DIR, downscale=8)


@needs_data
def test_npz_parts_and_split():
    cap = load_dnerf_npz(NPZ)
    assert len(cap) == 81 and cap.images.shape[1:] == (100, 100, 3)
    assert cap.meta["splits"]["train"] == list(range(0, 50))
    assert cap.meta["splits"]["val"] == list(range(50, 61))
    assert cap.train_idx.tolist() == list(range(0, 50))
    assert cap.eval_idx.tolist() == list(range(61, 81))  # held out = the test part
    k = cap.intrinsics[0]
    assert abs(k.fx - 138.8889) < 1e-3 and (k.cx, k.cy) == (50.0, 50.0)
    assert np.allclose(cap.box, [[-1.5] * 3, [1.5] * 3])


@needs_data
def test_val_folder_with_missing_splits(val_white):
    cap = val_white
    assert len(cap) == 11 and cap.images.shape[1:] == (100, 100, 3)
    assert len(cap.train_idx) == 11 and len(cap.eval_idx) == 0  # no train file: all train
    listed = [f["time"] for f in json.loads((VAL_DIR / "transforms_val.json").read_text())["frames"]]
    assert np.allclose(cap.times, listed)
    # 800 px, camera_angle_x = 0.6911 -> fx = 400 / tan(0.3456) = 1111.1; /8 -> 138.9
    assert abs(cap.intrinsics[0].fx - 138.8889) < 1e-2


@needs_data
def test_folder_matches_npz_val_part(val_white):
    """The npz's val part (50-60) is the same frames: same poses, times and (on black)
    nearly the same pixels (the npz was resized by its own code)."""
    black = load_dnerf(VAL_DIR, downscale=8, background=(0.0, 0.0, 0.0))
    npz = load_dnerf_npz(NPZ)
    val = npz.meta["splits"]["val"]
    assert np.allclose(black.c2w, npz.c2w[val], atol=1e-5)
    assert np.allclose(black.times, npz.times[val], atol=1e-6)
    assert np.abs(black.images - npz.images[val]).mean() < 0.03


@needs_data
def test_background_is_composited(val_white):
    black = load_dnerf(VAL_DIR, downscale=8, background=(0.0, 0.0, 0.0))
    # corners are empty (alpha 0): white on white, black on black
    assert np.allclose(val_white.images[:, 0, 0], 1.0) and np.allclose(black.images[:, 0, 0], 0.0)
    # the object (alpha 1 in the middle) is the same on both backgrounds
    assert np.abs(val_white.images[:, 50, 50] - black.images[:, 50, 50]).max() < 0.05


@needs_data
def test_splits_train_and_test(tmp_path):
    """A folder with train and test files: train = train split, held out = test split;
    file_path without extension; a json file alone loads only that split."""
    src = json.loads((VAL_DIR / "transforms_val.json").read_text())
    (tmp_path / "val").symlink_to(VAL_DIR / "val")
    for name, frames in (("train", src["frames"][:7]), ("test", src["frames"][7:])):
        (tmp_path / f"transforms_{name}.json").write_text(json.dumps({"camera_angle_x": src["camera_angle_x"], "frames": frames}))
    cap = load_capture(tmp_path, downscale=16, bound=None)
    assert cap.train_idx.tolist() == list(range(7)) and cap.eval_idx.tolist() == [7, 8, 9, 10]
    assert cap.box is None and cap.images.shape[1:3] == (50, 50)
    only = load_capture(tmp_path / "transforms_test.json", downscale=16)
    assert len(only) == 4 and only.meta["splits"] == {"test": [0, 1, 2, 3]}
