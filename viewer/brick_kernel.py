"""The Taichi kernel that ray-marches a baked loop through its brick grid (`bricks.py`).

Parallel over pixels (DESIGN §8). Per pixel: the camera ray, clipped to the box; the
march of `march.next_segment` over the max pyramid of (culled) density bounds, so
empty space is skipped in large cells and faint space costs one sample a cell; at a
sample one trilinear lookup of the log density in its brick (two, blended, in a moving
brick: the two loop frames around the phase) and, once the weight T * alpha of the
samples since the last colour reaches P_MIN_ALPHA, a trilinear lookup of the k colour
coordinates, decoded with the ray's G(d), g(d) (one bilinear lookup of the colour
table per ray, kept in registers): colour = sigmoid(G(d) z + g(d)), given to that
weight (faint haze shares one colour per P_MIN_ALPHA of light). Each step's budget of
optical depth (P_TAU, P_SKIP) grows as the ray's light T runs out, by 1 / T
(`march.light_scaled`, floored at P_LIGHT_FLOOR): a ray that is half behind a surface
takes long steps there. The ray stops once its transmittance is under P_STOP_T.

Pixels run in square tiles of `tile` (`TILE`): neighbouring rays meet the same
bricks, which a row-major order scatters over a whole image row (8: 5-15 % faster on
the demo loop at 320x240).

`brick` (B) and `rank` (k) are compile-time, so the corner strides are constants and
the colour code's loops unroll into registers; one compile serves every file with the
same (B, k) (the defaults: one).
"""

import taichi as ti

TILE = 8
"""Side of the square pixel tiles (see the module docstring)."""

from loopnerf.viewer.march import (
    P_MIN_ALPHA,
    P_STOP_T,
    camera_ray,
    direction_taps,
    march_setup,
    median_crossing,
    field_point,
    light_scaled,
    march_range,
    march_segment,
    resume_level,
    record_visibility,
    table_lookup,
    ray_background,
    write_pixel,
)


@ti.kernel
def render_bricks_kernel(
    slot: ti.types.ndarray(dtype=ti.i32, ndim=3),
    dynamic: ti.types.ndarray(dtype=ti.i32, ndim=3),
    log_density: ti.types.ndarray(dtype=ti.f16, ndim=1),
    colour: ti.types.ndarray(dtype=ti.u8, ndim=1),
    colour_table: ti.types.ndarray(dtype=ti.f32, ndim=4),
    density_mip: ti.types.ndarray(dtype=ti.f32, ndim=1),
    mip_meta: ti.types.ndarray(dtype=ti.i32, ndim=2),
    params: ti.types.ndarray(dtype=ti.f32, ndim=1),
    rgb_out: ti.types.ndarray(dtype=ti.u8, ndim=3),
    depth_out: ti.types.ndarray(dtype=ti.f32, ndim=2),
    opacity_out: ti.types.ndarray(dtype=ti.f32, ndim=2),
    samples_out: ti.types.ndarray(dtype=ti.i32, ndim=2),
    visibility: ti.types.ndarray(dtype=ti.f32, ndim=1),
    sky: ti.types.ndarray(dtype=ti.f32, ndim=3),
    frame0: ti.i32,
    frame1: ti.i32,
    blend: ti.f32,
    cells_x: ti.i32,
    cells_y: ti.i32,
    cells_z: ti.i32,
    brick: ti.template(),
    rank: ti.template(),
    tile: ti.template(),
):
    """Render one image of the loop `blend` of the way from loop frame0 to frame1.

    slot, dynamic [Bx, By, Bz] int32; log_density [n_slots * (B+1)^3] float16; colour
    [n_slots * (B+1)^3 * k] uint8; colour_table [Hd, Wd, 3, k+1] (see `BrickGrid`).
    density_mip / mip_meta: the max pyramid of density bounds (`density_pyramid`).
    params [N_PARAMS] (`march.P_*`): camera, box, near/far, step, thresholds and
    frame0, frame1, blend: a moving brick blends (1 - blend) frame0 + blend frame1.
    Outputs as `render_kernel.render_loop_kernel`: rgb_out [H, W, 3] uint8, depth_out
    (expected distance, misses at `far`), opacity_out, samples_out [H, W].
    visibility [Gx * Gy * Gz] float32: when params[P_RECORD] > 0, each sample's weight
    T * alpha is max-ed into its level-0 pyramid cell (visibility culling); else unused.
    cells_*: the voxel cells per axis (N_a).
    """
    height = rgb_out.shape[0]
    width = rgb_out.shape[1]
    n_bx = slot.shape[0]
    n_by = slot.shape[1]
    n_bz = slot.shape[2]
    table_h = colour_table.shape[0]
    table_w = colour_table.shape[1]
    B1 = brick + 1
    V = B1 * B1 * B1
    cells = ti.Vector([ti.cast(cells_x, ti.f32), ti.cast(cells_y, ti.f32), ti.cast(cells_z, ti.f32)])
    tiles_x = (width + tile - 1) // tile
    tiles_y = (height + tile - 1) // tile
    for pix in range(tiles_x * tiles_y * tile * tile):
        tid = pix // (tile * tile)
        inner = pix % (tile * tile)
        row = (tid // tiles_x) * tile + inner // tile
        col = (tid % tiles_x) * tile + inner % tile
        if row >= height or col >= width:
            continue
        origin, direction = camera_ray(params, row, col)
        on, dn, t_lo, t_hi, t_in_lo, t_in_hi, contracted = march_range(params, origin, direction)
        transmittance = 1.0
        acc = ti.Vector([0.0, 0.0, 0.0])
        pending = 0.0  # weight of samples that skipped their colour, given the next colour
        last = ti.Vector([0.0, 0.0, 0.0])
        acc_t = 0.0
        t_med = -1.0  # median distance, once the transmittance crosses 1/2
        n_eval = 0
        if t_lo < t_hi:
            r0, r1, c0, c1, tw = direction_taps(direction, table_h, table_w)
            gmat = ti.Matrix.zero(ti.f32, 3, rank + 1)
            for ch in ti.static(range(3)):
                for j in ti.static(range(rank + 1)):
                    gmat[ch, j] = table_lookup(colour_table, r0, r1, c0, c1, tw, ch, j)
            inv_dn, base_step, tau, skip, nudge, record = march_setup(params, dn)
            t = t_lo
            level = mip_meta.shape[0] - 1
            while t < t_hi:
                tau_t, skip_t = light_scaled(params, tau, skip, transmittance)
                seg_end, n_pieces, found = march_segment(density_mip, mip_meta, on, dn, inv_dn, t, t_hi, t_in_lo, t_in_hi, contracted, nudge, base_step, tau_t, skip_t, level)
                level = resume_level(mip_meta, found)
                delta = (seg_end - t) / ti.max(n_pieces, 1)
                for i in range(n_pieces):
                    ts = t + (i + 0.5) * delta
                    xn = field_point(on + ts * dn, contracted)  # field coordinates
                    u = (xn + 1.0) * 0.5 * cells
                    bx = ti.math.clamp(ti.cast(ti.floor(u[0] / brick), ti.i32), 0, n_bx - 1)
                    by = ti.math.clamp(ti.cast(ti.floor(u[1] / brick), ti.i32), 0, n_by - 1)
                    bz = ti.math.clamp(ti.cast(ti.floor(u[2] / brick), ti.i32), 0, n_bz - 1)
                    s = slot[bx, by, bz]
                    n_eval += 1
                    if s >= 0:
                        lx = ti.math.clamp(u[0] - bx * brick, 0.0, ti.cast(brick, ti.f32))
                        ly = ti.math.clamp(u[1] - by * brick, 0.0, ti.cast(brick, ti.f32))
                        lz = ti.math.clamp(u[2] - bz * brick, 0.0, ti.cast(brick, ti.f32))
                        ix = ti.min(ti.cast(lx, ti.i32), brick - 1)
                        iy = ti.min(ti.cast(ly, ti.i32), brick - 1)
                        iz = ti.min(ti.cast(lz, ti.i32), brick - 1)
                        fx = lx - ix
                        fy = ly - iy
                        fz = lz - iz
                        corner = (ix * B1 + iy) * B1 + iz
                        w = ti.Vector([
                            (1 - fx) * (1 - fy) * (1 - fz), (1 - fx) * (1 - fy) * fz,
                            (1 - fx) * fy * (1 - fz), (1 - fx) * fy * fz,
                            fx * (1 - fy) * (1 - fz), fx * (1 - fy) * fz,
                            fx * fy * (1 - fz), fx * fy * fz,
                        ])
                        moving = dynamic[bx, by, bz]
                        base = (s + moving * frame0) * V + corner
                        logd = 0.0
                        for q in ti.static(range(8)):
                            o = (q >> 2) * B1 * B1 + ((q >> 1) & 1) * B1 + (q & 1)
                            logd += w[q] * ti.cast(log_density[base + o], ti.f32)
                        base1 = (s + moving * frame1) * V + corner
                        a1 = blend * moving
                        if a1 > 0.0:
                            second = 0.0
                            for q in ti.static(range(8)):
                                o = (q >> 2) * B1 * B1 + ((q >> 1) & 1) * B1 + (q & 1)
                                second += w[q] * ti.cast(log_density[base1 + o], ti.f32)
                            logd = (1.0 - a1) * logd + a1 * second
                        sigma = ti.exp(ti.min(logd, 80.0))
                        alpha = 1.0 - ti.exp(-sigma * delta)
                        weight = transmittance * alpha
                        if record:
                            record_visibility(visibility, mip_meta, xn, weight)
                        if weight + pending > params[P_MIN_ALPHA]:
                            z = ti.Vector.zero(ti.f32, rank)
                            for q in ti.static(range(8)):
                                o = (q >> 2) * B1 * B1 + ((q >> 1) & 1) * B1 + (q & 1)
                                for j in ti.static(range(rank)):
                                    z[j] += w[q] * ti.cast(colour[(base + o) * rank + j], ti.f32)
                            if a1 > 0.0:
                                z1 = ti.Vector.zero(ti.f32, rank)
                                for q in ti.static(range(8)):
                                    o = (q >> 2) * B1 * B1 + ((q >> 1) & 1) * B1 + (q & 1)
                                    for j in ti.static(range(rank)):
                                        z1[j] += w[q] * ti.cast(colour[(base1 + o) * rank + j], ti.f32)
                                z = (1.0 - a1) * z + a1 * z1
                            for ch in ti.static(range(3)):
                                logit = gmat[ch, rank]
                                for j in ti.static(range(rank)):
                                    logit += gmat[ch, j] * z[j]
                                last[ch] = 1.0 / (1.0 + ti.exp(-logit))
                            acc += (weight + pending) * last
                            pending = 0.0
                        else:
                            pending += weight
                        acc_t += weight * ts
                        t_med = median_crossing(t_med, transmittance, alpha, sigma, ts, delta)
                        transmittance *= 1.0 - alpha
                        if transmittance < params[P_STOP_T]:
                            break
                if transmittance < params[P_STOP_T]:
                    break
                t = seg_end
        acc += pending * last
        write_pixel(params, rgb_out, depth_out, opacity_out, samples_out, row, col, acc, acc_t, t_med, transmittance, n_eval,
                    ray_background(params, sky, direction))
