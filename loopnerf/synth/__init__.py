"""The built-in synthetic capture (`loopnerf synth`).

A small textured scene inside about [-1, 1]^3 with exactly periodic moving parts
(a waving flag, optionally a windmill and water ripples), filmed by a handheld-style
camera that holds still 3-4 times, rendered by an independent ray caster (open3d
`RaycastingScene`), with ground truth for scoring: the true still stretches, the
period, and one full period of frames + a moving-pixel mask from 3 test cameras.

Modules: `textures` (procedural colours), `scene` (static meshes, `SyntheticScene`),
`motion` (moving parts as functions of the loop phase), `camera_path` (the path and
the ground-truth cameras), `raycast` (the renderer), `command` (`SynthConfig`,
`make_synthetic_capture`, `write_synthetic_capture`, the `synth` CLI command).
"""
