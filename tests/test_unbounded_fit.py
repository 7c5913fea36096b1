"""Stage 1 on a capture that reaches past its box: the contraction choice, the unbounded
ray spacing, and the tiny demo on the far backdrop end to end (fit unbounded, bake as
`.loop` version 2, view it, score it)."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from loopnerf.cli import main
from loopnerf.model.contraction_choice import choose_contraction
from loopnerf.synth.command import SynthConfig, make_synthetic_capture


@pytest.mark.parametrize("backdrop,expected", [("near", "none"), ("far", "mipnerf360")])
def test_contraction_is_chosen_from_what_the_misses_see(backdrop, expected):
    cap, _ = make_synthetic_capture(SynthConfig(frames=24, size=32, supersample=1, backdrop=backdrop))
    choice, note = choose_contraction(cap, cap.scene_box(), 0.05)
    assert choice == expected and note.startswith(f"contraction: {expected}")


def test_contraction_none_when_every_ray_meets_the_box():
    cap, _ = make_synthetic_capture(SynthConfig(frames=24, size=32, supersample=1, backdrop="far"))
    huge = np.array([[-50.0, -50.0, -50.0], [50.0, 50.0, 50.0]])
    choice, note = choose_contraction(cap, huge, 0.05)
    assert choice == "none" and "meet the scene box" in note


def test_unbounded_spacing_is_linear_to_the_box_exit_then_disparity():
    from loopnerf.fields.field import ProposalConfig
    from loopnerf.model.config import preset
    from loopnerf.model.kplanes_model import KPlanesModel

    cfg = preset("tiny").model
    cfg.contraction = "mipnerf360"
    cfg.field = type(cfg.field)(**{**cfg.field.__dict__, "resolution": (*cfg.field.resolution[:3], 4)})
    cfg.proposals = tuple(ProposalConfig((*p.resolution[:3], 4), p.features) for p in cfg.proposals)
    model = KPlanesModel(cfg, np.array([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]))
    o = torch.tensor([[0.0, 0.0, 3.0], [0.0, 0.0, 3.0]])
    d = torch.tensor([[0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])  # through the box; away from it
    t_near, t_far = model.ray_range(o, d)
    split = model.ray_split(o, d)
    assert split[0] == pytest.approx(4.0)  # leaves the box at z = -1
    assert split[1] == pytest.approx(2 * cfg.near)  # closest to the box centre at the origin
    s = torch.linspace(0.0, 1.0, 101).expand(2, -1)
    t = model.s_to_t(s, t_near, t_far, split)
    assert torch.all(t[:, 1:] > t[:, :-1])
    assert torch.allclose(t[:, 0], t_near) and torch.allclose(t[:, -1], t_far, rtol=1e-4) and torch.allclose(t[:, 50], split)
    # half the samples in front of the box exit, evenly; the other half evenly in 1 / t
    assert torch.allclose(t[0, 1:51] - t[0, :50], torch.full((50,), (4.0 - cfg.near) / 50), rtol=1e-4)
    inv = 1.0 / t[0, 50:]
    assert torch.allclose(inv[1:] - inv[:-1], torch.full((50,), (1 / t_far[0] - 0.25) / 50), rtol=1e-3)
    with pytest.raises(ValueError, match="t_split"):
        model.s_to_t(s, t_near, t_far)


def test_an_unbounded_model_learns_its_sky():
    """An unbounded model composites a learnt colour per direction behind the field (it
    starts at the background colour); the colour loss reaches it, a bounded model has none."""
    from loopnerf.model.config import preset
    from loopnerf.model.kplanes_model import KPlanesModel
    from loopnerf.model.config import resolve_time_resolution

    cfg = resolve_time_resolution(preset("tiny"), 4).model
    cfg.contraction = "mipnerf360"
    model = KPlanesModel(cfg, np.array([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]))
    assert model.sky is not None and model.sky.shape == (*cfg.sky_resolution, 3)
    g = torch.Generator().manual_seed(0)
    o = torch.tensor([[0.0, 0.0, 3.0]]).expand(64, 3).contiguous()
    d = torch.nn.functional.normalize(torch.randn(64, 3, generator=g), dim=-1)
    bg = torch.tensor(cfg.background)
    assert torch.allclose(model.sky_colour(d), bg.expand(64, 3), atol=2e-3)
    out = model(o, d, torch.zeros(64))
    (out["rgb"] - torch.tensor([0.0, 1.0, 0.0])).square().mean().backward()
    assert model.sky.grad is not None and float(model.sky.grad.abs().sum()) > 0
    cfg.contraction = "none"
    assert KPlanesModel(cfg, np.array([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])).sky is None


def test_auto_contraction_needs_a_capture():
    from loopnerf.errors import ConfigError
    from loopnerf.model.config import preset
    from loopnerf.model.kplanes_model import KPlanesModel

    with pytest.raises(ConfigError, match="auto"):
        KPlanesModel(preset("tiny").model, np.array([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]))


@pytest.fixture(scope="module")
def far_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("far_demo")
    assert main(["demo", "--preset", "tiny", "--backdrop", "far", "--out", str(out), "--quiet"]) == 0
    return out


def test_far_demo_is_unbounded_end_to_end(far_demo):
    """Stage 1 chose contraction by itself and said so; the bake is version 2; the
    viewer's render of it matches the PyTorch reference; the report has every stage."""
    from loopnerf.export.loop_format import load_loop
    from loopnerf.export.reference_render import render_camera
    from loopnerf.viewer.renderer import Renderer

    run = far_demo / "run"
    cfg = json.loads((run / "stage1" / "config.json").read_text())["config"]
    assert cfg["model"]["contraction"] == "mipnerf360"
    first = json.loads((run / "stage1" / "log.jsonl").read_text().splitlines()[0])
    assert first["contraction"] == "mipnerf360" and "unbounded" in first["contraction_note"]
    baked = load_loop(run / "scene.loop")
    assert baked.contraction == "mipnerf360" and baked.version == 2 and baked.far >= 50.0
    assert baked.sky is not None and float(baked.sky.float().std()) > 0.0  # the learnt sky was baked
    for backend in ("planes", "bricks"):
        r = Renderer(baked, 32, 32, backend=backend)
        rgb, _ = r.render_phase(r.default_c2w(), 0.25)
        ref = render_camera(baked, phase=0.25, n_samples=1024)["rgb"].numpy().reshape(rgb.shape)
        mse = float(np.mean((rgb / 255.0 - ref) ** 2))
        assert -10 * np.log10(mse) >= 35.0, backend
    report = (far_demo / "report.md").read_text()
    assert "held-out PSNR" in report and "far backdrop" in report
