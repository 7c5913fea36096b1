"""Structure-from-motion with pycolmap: features, matching, incremental mapping.

All frames share one camera (a phone video keeps its zoom), which makes the focal
length far better constrained than per-frame cameras. Matching is sequential (each
frame against the next `overlap` ones, plus quadratically spaced ones, so drift is
tied down) or exhaustive (every pair; affordable and more robust for short clips).
Loop detection needs a vocabulary-tree file and stays off.

Video frames have short baselines, so COLMAP's defaults for the initial pair (16
degrees of triangulation angle, 100 inliers) usually fail and the mapper spends its
time relaxing them; we start from relaxed values (`INIT_MIN_TRI_ANGLE`,
`INIT_MIN_INLIERS`).

COLMAP conventions kept here: `cam_from_world` maps world to camera coordinates with
OpenCV axes (x right, y down, z forward); pixel centres are at (u + 0.5, v + 0.5), the
same as LoopNeRF's, so cx, cy carry over unchanged.
"""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

CAMERA_MODELS = ("SIMPLE_RADIAL", "SIMPLE_PINHOLE", "PINHOLE", "RADIAL", "OPENCV")
INIT_MIN_TRI_ANGLE = 4.0  # degrees (COLMAP default 16, which a video's neighbouring frames rarely reach)
INIT_MIN_INLIERS = 50  # (COLMAP default 100; low-resolution video frames hold a few hundred features)


@dataclass
class SfmResult:
    """The winning reconstruction, as plain arrays.

    Attributes:
        names: image names of the registered frames (sorted by name = video order).
        cam_from_world: [M, 3, 4] float64 world-to-camera [R | t], OpenCV axes.
        camera_model: COLMAP model name of the shared camera.
        camera_params: dict param name -> value (`f`/`fx`/`fy`, `cx`, `cy`, `k`/`k1`, ...),
            in pixels of the processed images.
        width, height: image size the camera is for.
        points: [P, 3] float64 sparse 3D points (world).
        point_errors: [P] mean reprojection error of each point, pixels.
        mean_reprojection_error: pixels, over all observations.
        reconstruction_sizes: registered images of every reconstruction found, largest first.
        model_dir: where the winning model is stored (COLMAP binary format), or None.
    """

    names: list
    cam_from_world: np.ndarray
    camera_model: str
    camera_params: dict
    width: int
    height: int
    points: np.ndarray
    point_errors: np.ndarray
    mean_reprojection_error: float
    reconstruction_sizes: list = field(default_factory=list)
    model_dir: Optional[Path] = None


@contextlib.contextmanager
def quiet_colmap(verbose: bool = False):
    """Silence COLMAP's glog chatter (thousands of lines per run) unless `verbose`."""
    import pycolmap

    if verbose:
        yield
        return
    log = pycolmap.logging
    old = (log.minloglevel, log.stderrthreshold)
    log.minloglevel, log.stderrthreshold = 2, 2  # errors only
    try:
        yield
    finally:
        log.minloglevel, log.stderrthreshold = old


def extract_features(
    database: Path,
    image_dir: Path,
    names: list,
    camera_model: str = "SIMPLE_RADIAL",
    threads: int = -1,
    max_features: int = 8192,
    chunk: int = 0,
    on_chunk: Optional[Callable[[int], None]] = None,
) -> None:
    """SIFT keypoints + descriptors of `names` into `database`, one camera for all.

    Args:
        database: COLMAP SQLite database (created).
        image_dir: folder of the images.
        names: image file names to process.
        camera_model: one of `CAMERA_MODELS`.
        threads: CPU threads (-1 = all).
        max_features: SIFT features kept per image.
        chunk: images per pycolmap call (0 = all at once); smaller chunks let `on_chunk`
            report progress. Later chunks reuse the first chunk's camera.
        on_chunk: called with the number of images done so far.
    """
    import pycolmap

    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = camera_model
    opts = pycolmap.FeatureExtractionOptions()
    opts.num_threads = threads
    opts.sift.max_num_features = max_features
    step = chunk if chunk > 0 else len(names)
    done = 0
    for start in range(0, len(names), step):
        part = names[start : start + step]
        mode = pycolmap.CameraMode.SINGLE
        if start > 0:
            reader.existing_camera_id = 1  # the shared camera made by the first chunk
        pycolmap.extract_features(
            database, image_dir, image_names=part, camera_mode=mode, reader_options=reader,
            extraction_options=opts, device=pycolmap.Device.cpu,
        )
        done += len(part)
        if on_chunk is not None:
            on_chunk(done)


def match_features(database: Path, method: str, overlap: int = 10, threads: int = -1) -> None:
    """Match features between image pairs and verify them geometrically.

    Args:
        method: 'sequential' (each image with the next `overlap` images, plus
            quadratically spaced ones) or 'exhaustive' (every pair).
    """
    import pycolmap

    mopts = pycolmap.FeatureMatchingOptions()
    mopts.num_threads = threads
    if method == "exhaustive":
        pycolmap.match_exhaustive(database, matching_options=mopts, device=pycolmap.Device.cpu)
    elif method == "sequential":
        pairing = pycolmap.SequentialPairingOptions()
        pairing.overlap = int(overlap)
        pairing.quadratic_overlap = True
        pairing.loop_detection = False
        pycolmap.match_sequential(database, matching_options=mopts, pairing_options=pairing, device=pycolmap.Device.cpu)
    else:
        raise ValueError(f"unknown matching method {method!r}")


def map_incremental(
    database: Path,
    image_dir: Path,
    model_dir: Path,
    threads: int = -1,
    seed: int = 0,
    on_register: Optional[Callable[[], None]] = None,
    init_min_tri_angle: float = INIT_MIN_TRI_ANGLE,
    init_min_inliers: int = INIT_MIN_INLIERS,
) -> dict:
    """Incremental mapping; returns COLMAP's reconstructions {index: pycolmap.Reconstruction}.

    `on_register` is called each time an image is registered (progress);
    `init_min_tri_angle` (degrees) and `init_min_inliers` gate the initial image pair."""
    import pycolmap

    opts = pycolmap.IncrementalPipelineOptions()
    opts.num_threads = threads
    opts.random_seed = seed
    opts.mapper.init_min_tri_angle = init_min_tri_angle
    opts.mapper.init_min_num_inliers = init_min_inliers
    opts.ba_refine_principal_point = False  # poorly constrained by a short clip
    model_dir.mkdir(parents=True, exist_ok=True)
    kw = {}
    if on_register is not None:
        kw["next_image_callback"] = on_register
    return pycolmap.incremental_mapping(database, image_dir, model_dir, options=opts, **kw)


def largest_reconstruction(reconstructions: dict):
    """The reconstruction with the most registered images (None if there is none)."""
    recs = [r for r in reconstructions.values() if r.num_reg_images() > 0]
    if not recs:
        return None
    return max(recs, key=lambda r: r.num_reg_images())


def reconstruction_arrays(rec, model_dir: Optional[Path] = None) -> SfmResult:
    """A pycolmap reconstruction as an `SfmResult` (registered images sorted by name)."""
    if rec.num_cameras() != 1:
        raise RuntimeError(f"expected one shared camera, the reconstruction has {rec.num_cameras()}")
    cam = next(iter(rec.cameras.values()))
    images = sorted(
        (im for im in rec.images.values() if im.has_pose), key=lambda im: im.name
    )
    poses = np.stack([np.asarray(im.cam_from_world().matrix(), dtype=np.float64) for im in images])
    pts = list(rec.points3D.values())
    xyz = np.array([p.xyz for p in pts], dtype=np.float64).reshape(-1, 3)
    err = np.array([p.error for p in pts], dtype=np.float64)
    names = [s.strip() for s in cam.params_info.split(",")]
    params = {n: float(v) for n, v in zip(names, np.asarray(cam.params, dtype=np.float64))}
    return SfmResult(
        names=[im.name for im in images],
        cam_from_world=poses,
        camera_model=cam.model.name,
        camera_params=params,
        width=int(cam.width),
        height=int(cam.height),
        points=xyz,
        point_errors=err,
        mean_reprojection_error=float(rec.compute_mean_reprojection_error()),
        model_dir=model_dir,
    )


def run_sfm(
    image_dir: Path,
    names: list,
    work_dir: Path,
    camera_model: str = "SIMPLE_RADIAL",
    matcher: str = "sequential",
    overlap: int = 10,
    threads: int = -1,
    seed: int = 0,
    verbose: bool = False,
    progress=None,
    min_registered: int = 0,
) -> Optional[SfmResult]:
    """Features, matching and incremental mapping of `names`; the largest model wins.

    Args:
        image_dir: folder holding the images.
        names: the image files to reconstruct (video order).
        work_dir: scratch folder (database, models); the winner is saved in
            `work_dir/sparse_best` (COLMAP binary).
        camera_model: one of `CAMERA_MODELS` (shared by all frames).
        matcher: 'sequential' or 'exhaustive'.
        progress: optional `StepProgress` to show each step.
        min_registered: when the largest model registers fewer images, mapping runs
            once more with COLMAP's stricter first-pair thresholds and the next seed;
            the larger result wins.
    Returns: the winning reconstruction, or None when nothing could be reconstructed.
    """
    import pycolmap

    if camera_model not in CAMERA_MODELS:
        raise ValueError(f"camera model {camera_model!r} not in {CAMERA_MODELS}")
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    database = work_dir / "database.db"
    if database.exists():
        database.unlink()
    pycolmap.set_random_seed(seed)
    n = len(names)
    with quiet_colmap(verbose):
        with _step(progress, "Extracting features", n) as tick:
            extract_features(database, image_dir, names, camera_model, threads, chunk=max(8, n // 20),
                             on_chunk=lambda done: tick(done))
        with _step(progress, f"Matching ({matcher})", None):
            match_features(database, matcher, overlap, threads)
        # A poor initial pair can strand the mapper in a small model (we saw it with
        # multi-threaded runs on a short clip); features and matches stay valid, so a
        # second attempt with COLMAP's stricter defaults and another seed is cheap.
        attempts = [(INIT_MIN_TRI_ANGLE, INIT_MIN_INLIERS, seed), (16.0, 100, seed + 1)]
        best, recs, all_sizes = None, {}, []
        for attempt, (angle, inliers, attempt_seed) in enumerate(attempts):
            count = [0]
            label = "Mapping (registered frames)" if attempt == 0 else "Mapping again (stricter first pair)"
            with _step(progress, label, n) as tick:
                def on_register() -> None:
                    count[0] += 1
                    tick(min(count[0], n))

                sparse = work_dir / f"sparse{attempt}"
                recs = map_incremental(database, image_dir, sparse, threads, attempt_seed, on_register, angle, inliers)
            all_sizes += [r.num_reg_images() for r in recs.values()]
            cand = largest_reconstruction(recs)
            if cand is not None and (best is None or cand.num_reg_images() > best.num_reg_images()):
                best = cand
            if best is None or best.num_reg_images() >= min_registered:
                break  # nothing at all (no features), or good enough
    if best is None:
        return None
    best_dir = work_dir / "sparse_best"
    if best_dir.exists():
        shutil.rmtree(best_dir)
    best_dir.mkdir(parents=True)
    best.write(best_dir)
    result = reconstruction_arrays(best, best_dir)
    result.reconstruction_sizes = sorted(all_sizes, reverse=True)
    return result


@contextlib.contextmanager
def _step(progress, description: str, total: Optional[int]):
    """Run a step under `progress` (a `StepProgress`), or silently without one."""
    if progress is None:
        yield lambda done: None
        return
    with progress.step(description, total) as tick:
        yield tick
