"""The built-in synthetic capture (`loopnerf synth`).

A small textured scene inside about [-1, 1]^3 with moving parts (a waving flag,
optionally a windmill and water ripples) whose motion is natural by default (a tempo that
drifts and gusts of amplitude: it never repeats exactly) or exactly periodic, filmed by a
handheld-style camera that holds still 3-4 times, rendered by an independent ray caster
(open3d `RaycastingScene`), with ground truth for scoring: the true still stretches, the
period, one uniform cycle of frames (at the mean amplitude) + a moving-pixel mask from 3
test cameras, and the true states the capture showed at each still stretch's mean pose.

Modules: `textures` (procedural colours), `scene` (static meshes, `SyntheticScene`),
`motion` (moving parts as functions of the loop phase and amplitude; `MotionSchedule`), `camera_path` (the path and
the ground-truth cameras), `raycast` (the renderer), `command` (`SynthConfig`,
`make_synthetic_capture`, `write_synthetic_capture`, the `synth` CLI command).
"""
