"""Engine exports of a baked loop: glb (trimesh + the JSON chunk), ply sequence
(open3d + manifest), VideoLoop3D layers (composed back and compared with a direct
render from the default camera), and the refusal to write into a non-empty folder."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from loopnerf.errors import LoopNeRFError
from loopnerf.export import make_test_loop, save_loop
from loopnerf.export.command import export


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def baked():
    return make_test_loop(frames=4, resolution=12, features=4, scales=(1, 2), seed=0)


@pytest.fixture(scope="module")
def loop_path(baked, tmp_path_factory):
    return save_loop(tmp_path_factory.mktemp("engines") / "scene.loop", baked)


def test_glb(loop_path, baked, tmp_path):
    import trimesh

    from loopnerf.export.glb import read_glb_json

    export(loop_path, "glb", tmp_path / "glb", resolution=24, quiet=True)
    path = tmp_path / "glb" / "scene.glb"
    scene = trimesh.load(path)
    F = baked.frames
    assert len(scene.geometry) == F
    box = np.array(baked.box)
    for mesh in scene.geometry.values():
        assert len(mesh.faces) > 20
        lo, hi = mesh.bounds
        assert np.all(lo >= box[0] - 1e-4) and np.all(hi <= box[1] + 1e-4)
        # the blob (Gaussian width 0.3 of the half-box) is small: a fraction of the box
        assert np.all(hi - lo < 0.6 * (box[1] - box[0]))
        colours = mesh.visual.vertex_attributes["color"]
        assert colours.shape == (len(mesh.vertices), 3) and 0 <= colours.min() and colours.max() <= 1
    # The blob moves between frames: the mesh centres differ.
    centres = [m.bounds.mean(axis=0) for m in scene.geometry.values()]
    assert max(np.linalg.norm(c - centres[0]) for c in centres) > 0.1
    gltf = read_glb_json(path)
    assert gltf["asset"]["version"] == "2.0"
    (anim,) = gltf["animations"]
    assert len(anim["channels"]) == F
    assert {c["target"]["path"] for c in anim["channels"]} == {"scale"}
    assert sorted(c["target"]["node"] for c in anim["channels"]) == list(range(F))
    for k, sampler in enumerate(anim["samplers"]):
        assert sampler["interpolation"] == "STEP"
        times = gltf["accessors"][sampler["input"]]
        assert times["count"] == F + 1
        assert times["max"][0] == pytest.approx(F / baked.fps)
    # Exactly one node is visible at rest (frame 0).
    scales = [n.get("scale") for n in gltf["nodes"][:F]]
    assert scales[0] == [1.0, 1.0, 1.0] and all(s == [0.0, 0.0, 0.0] for s in scales[1:])


def test_ply_sequence(loop_path, baked, tmp_path):
    import open3d as o3d

    out = tmp_path / "ply"
    export(loop_path, "ply", out, resolution=24, quiet=True)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["fps"] == baked.fps and manifest["frame_count"] == baked.frames
    assert manifest["frames"] == [f"frame_{k:04d}.ply" for k in range(baked.frames)]
    box = np.array(baked.box)
    for name, count in zip(manifest["frames"], manifest["points_per_frame"]):
        pc = o3d.io.read_point_cloud(str(out / name))
        pts = np.asarray(pc.points)
        assert len(pts) == count > 20
        assert pc.has_colors() and pc.has_normals()
        assert np.all(pts >= box[0] - 1e-4) and np.all(pts <= box[1] + 1e-4)


def _read_obj(path):
    verts, uvs, faces = [], [], []
    for line in path.read_text().splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "v":
            verts.append([float(x) for x in parts[1:7]])
        elif parts[0] == "vt":
            uvs.append([float(x) for x in parts[1:3]])
        elif parts[0] == "f":
            faces.append([tuple(int(i) - 1 for i in p.split("/")) for p in parts[1:]])
    return np.array(verts), np.array(uvs), faces


def _compose_layers(out, cam, frame):
    """Composite the exported planes front to back as the three.js player would see
    them from the reference camera: each quad projected with the camera must cover
    the image, and its texels are read from the atlas through its UVs."""
    import imageio.v3 as iio

    W, H = cam["width"], cam["height"]
    K = np.array([[cam["fx"], 0, cam["cx"]], [0, cam["fy"], cam["cy"]], [0, 0, 1]])
    verts, uvs, faces = _read_obj(out / "geometry.obj")
    static = iio.imread(out / "static.png").astype(np.float64) / 255
    dynamic = iio.imread(out / "dynamic" / f"{frame:04d}.png").astype(np.float64) / 255
    AH, AW = static.shape[:2]
    quads = {}
    for face in faces:  # group the two triangles of each quad by their vertex set's depth
        z = verts[face[0][0], 2]
        quads.setdefault(round(z, 6), set()).update(face)
    layers = []
    for z, corners in quads.items():
        vids = sorted({v for v, _ in corners})
        tids = sorted({t for _, t in corners})
        p = verts[vids, :3] @ K.T
        pix = p[:, :2] / p[:, 2:]
        assert np.allclose(pix.min(0), [0, 0], atol=1e-3) and np.allclose(pix.max(0), [W, H], atol=1e-3)
        uv = uvs[tids]
        c0 = int(round(uv[:, 0].min() * AW))
        r0 = int(round((1 - uv[:, 1].max()) * AH))
        assert round((uv[:, 0].max() - uv[:, 0].min()) * AW) == W
        is_static = verts[vids[0], 3] > 0.5
        tile = (static if is_static else dynamic)[r0 : r0 + H, c0 : c0 + W]
        layers.append((z, tile))
    layers.sort(key=lambda zt: zt[0])  # near first
    rgb = np.zeros((H, W, 3))
    trans = np.ones((H, W, 1))
    for _, tile in layers:
        a = tile[..., 3:4]
        rgb += trans * a * tile[..., :3]
        trans *= 1 - a
    return rgb, trans[..., 0], len(layers)


def test_layers_compose_back_to_the_direct_render(loop_path, baked, tmp_path):
    from loopnerf.export.reference_render import render_camera

    out = tmp_path / "layers"
    planes, samples = 8, 64
    export(loop_path, "layers", out, planes=planes, samples=samples, quiet=True)
    meta = json.loads((out / "meta.json").read_text())
    cam = baked.camera
    assert meta["frame_count"] == baked.frames and meta["fps"] == baked.fps
    assert meta["fov"] == pytest.approx(math.degrees(2 * math.atan(cam["cy"] / cam["fy"])))
    assert 0 < meta["near"] < meta["far"]
    assert sorted(p.name for p in (out / "dynamic").iterdir()) == [f"{k:04d}.png" for k in range(baked.frames)]
    # The moving blob lands on dynamic (green) planes; some empty planes are static (red).
    colours = {tuple(line.split()[4:7]) for line in (out / "geometry.obj").read_text().splitlines() if line.startswith("v ")}
    assert ("0", "1", "0") in colours
    bg = torch.tensor(baked.background).numpy()
    figures = []
    for k in range(baked.frames):
        rgb, trans, n = _compose_layers(out, cam, k)
        assert n == planes
        composed = rgb + trans[..., None] * bg
        direct = render_camera(baked, phase=k / baked.frames, n_samples=samples)
        ref = direct["rgb"].numpy()
        mse = float(np.mean((composed - ref) ** 2))
        fg = direct["acc"].numpy() > 0.05
        mse_fg = float(np.mean((composed[fg] - ref[fg]) ** 2))
        figures.append((-10 * math.log10(max(mse, 1e-20)), -10 * math.log10(max(mse_fg, 1e-20))))
    print("layers composed vs direct render PSNR (all, foreground):", [(round(a, 1), round(b, 1)) for a, b in figures])
    assert min(a for a, _ in figures) >= 30.0
    assert min(b for _, b in figures) >= 30.0


def test_run_folder_is_accepted(loop_path, tmp_path):
    export(loop_path.parent, "ply", tmp_path / "from_run", resolution=12, quiet=True)
    assert (tmp_path / "from_run" / "manifest.json").exists()


def test_refuses_non_empty_folder(loop_path, tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(LoopNeRFError, match="not empty"):
        export(loop_path, "ply", out, resolution=16, quiet=True)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    export(loop_path, "ply", out, resolution=16, overwrite=True, quiet=True)
    assert (out / "manifest.json").exists() and (out / "keep.txt").read_text() == "mine"


def test_cli_reports_bad_loop_file_cleanly(tmp_path):
    bad = tmp_path / "bad.loop"
    bad.write_bytes(b"\x80\x04not a loop")
    proc = subprocess.run(
        [sys.executable, "-m", "loopnerf.cli", "export", str(bad), "--format", "glb", "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert re.search(r"error: .*bad\.loop", proc.stderr), proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "o").exists()
