"""The Taichi kernel that ray-marches a baked loop at one loop phase.

One kernel, parallel over pixels (DESIGN §8: a CPU parallel loop needs thousands of
outer iterations to use every core). Per pixel it builds the camera ray (OpenGL
axes, pixel centres at +0.5), clips it to the scene box and [near, far], and walks it
with steps sized by a max pyramid of per-cell density bounds (`density_pyramid` in
renderer.py): at distance t it looks down from one level above the previous step's
(`march.resume_level`; the coarsest at the ray's start) for the first cell
whose optical-depth bound along the ray, bound * (cell exit - t), is below P_SKIP
(skipped: nothing to see) or below P_TAU (one sample at its middle covers it); a
finest-level cell that is neither gets ceil(length / max(step, tau / bound)) evenly
spaced samples. Faint haze thus costs one sample per large cell, surfaces are marched
at the baked step. At a sample the features are

    f[s*C + c] = xy_s(x, y)[c] * xz_s(x, z)[c] * yz_s(y, z)[c]       (bilinear)
               * lx_s(x)[c] * ly_s(y)[c] * lz_s(z)[c]                 (linear)

where l*_s are the loop planes already collapsed on the host to the current phase
(`collapse_loop_planes`), so a sample costs 3 bilinear + 3 linear lookups per scale,
all channel-last with a plain `for c in range(C)` loop. Density = exp(f . w + b - 1)
(trunc_exp's forward); colour = sigmoid(B(d) f) with B(d) [3, C*S] looked up once per
ray in the baked direction table (bilinear) and kept in a per-pixel scratch row,
evaluated only for samples whose weight matters. The ray stops once transmittance
falls under P_STOP_T.

All arrays are passed as ndarrays (no copies) and flattened where their number
varies with the scene (scales, pyramid levels), so one compiled kernel serves every
.loop file. (Compile-time C and S with unrolled channel loops were tried: no faster on
the CPU backend, and a 10x longer compile.)
"""



import taichi as ti

from loopnerf.viewer.march import (  # noqa: F401  (P_* re-exported for older callers)
    N_PARAMS,
    P_MIN_ALPHA,
    P_RECORD,
    P_SIGMA_BIAS,
    P_SKIP,
    P_STEP,
    P_STOP_T,
    P_TAU,
    camera_ray,
    direction_taps,
    march_setup,
    median_crossing,
    field_point,
    march_range,
    march_segment,
    resume_level,
    record_visibility,
    table_lookup,
    ray_background,
    write_pixel,
)


@ti.func
def _bilinear_taps(u: ti.f32, v: ti.f32, width: ti.i32, height: ti.i32):
    """Corner indices (row-major, in cells) and weights of an align_corners bilinear
    lookup at (u, v) in [-1, 1]^2 on a [height, width] grid, with border clamp."""
    px = ti.math.clamp((u + 1.0) * 0.5 * (width - 1), 0.0, ti.cast(width - 1, ti.f32))
    py = ti.math.clamp((v + 1.0) * 0.5 * (height - 1), 0.0, ti.cast(height - 1, ti.f32))
    x0 = ti.min(ti.cast(ti.floor(px), ti.i32), ti.max(width - 2, 0))
    y0 = ti.min(ti.cast(ti.floor(py), ti.i32), ti.max(height - 2, 0))
    x1 = ti.min(x0 + 1, width - 1)
    y1 = ti.min(y0 + 1, height - 1)
    ax = px - x0
    ay = py - y0
    idx = ti.Vector([y0 * width + x0, y0 * width + x1, y1 * width + x0, y1 * width + x1], dt=ti.i32)
    wts = ti.Vector([(1 - ax) * (1 - ay), ax * (1 - ay), (1 - ax) * ay, ax * ay], dt=ti.f32)
    return idx, wts


@ti.func
def _linear_taps(u: ti.f32, length: ti.i32):
    """Indices and weights of an align_corners linear lookup at u in [-1, 1], border clamp."""
    p = ti.math.clamp((u + 1.0) * 0.5 * (length - 1), 0.0, ti.cast(length - 1, ti.f32))
    i0 = ti.min(ti.cast(ti.floor(p), ti.i32), ti.max(length - 2, 0))
    i1 = ti.min(i0 + 1, length - 1)
    a = p - i0
    return ti.Vector([i0, i1], dt=ti.i32), ti.Vector([1 - a, a], dt=ti.f32)


@ti.func
def _tap4(values: ti.template(), offsets, weights, c: ti.i32) -> ti.f32:
    """Channel c of a 4-tap (bilinear) lookup: sum_k weights[k] * values[offsets[k] + c]."""
    return (
        weights[0] * values[offsets[0] + c]
        + weights[1] * values[offsets[1] + c]
        + weights[2] * values[offsets[2] + c]
        + weights[3] * values[offsets[3] + c]
    )


@ti.func
def _tap2(values: ti.template(), offsets, weights, c: ti.i32) -> ti.f32:
    """Channel c of a 2-tap (linear) lookup."""
    return weights[0] * values[offsets[0] + c] + weights[1] * values[offsets[1] + c]


@ti.kernel
def render_loop_kernel(
    static_planes: ti.types.ndarray(dtype=ti.f32, ndim=1),
    static_meta: ti.types.ndarray(dtype=ti.i32, ndim=2),
    lines: ti.types.ndarray(dtype=ti.f32, ndim=1),
    line_meta: ti.types.ndarray(dtype=ti.i32, ndim=2),
    sigma_weight: ti.types.ndarray(dtype=ti.f32, ndim=1),
    dir_table: ti.types.ndarray(dtype=ti.f32, ndim=4),
    density_mip: ti.types.ndarray(dtype=ti.f32, ndim=1),
    mip_meta: ti.types.ndarray(dtype=ti.i32, ndim=2),
    params: ti.types.ndarray(dtype=ti.f32, ndim=1),
    rgb_out: ti.types.ndarray(dtype=ti.u8, ndim=3),
    depth_out: ti.types.ndarray(dtype=ti.f32, ndim=2),
    opacity_out: ti.types.ndarray(dtype=ti.f32, ndim=2),
    samples_out: ti.types.ndarray(dtype=ti.i32, ndim=2),
    feature_scratch: ti.types.ndarray(dtype=ti.f32, ndim=2),
    basis_scratch: ti.types.ndarray(dtype=ti.f32, ndim=3),
    visibility: ti.types.ndarray(dtype=ti.f32, ndim=1),
    sky: ti.types.ndarray(dtype=ti.f32, ndim=3),
    region: ti.types.ndarray(dtype=ti.u8, ndim=3),
    n_channels: ti.i32,
    n_scales: ti.i32,
):
    """Render one image of the loop at the phase its `lines` were collapsed to.

    static_planes [sum of H*W*C] float32: planes xy, xz, yz of every scale, each
        [H, W, C] flattened; static_meta [S*3, 3] int32: (offset, W, H) per plane in
        that order (pair (i, j): coordinate i indexes W, j indexes H).
    lines [sum of R*C] float32: the loop planes xt, yt, zt of every scale collapsed to
        one phase, each [R, C]; line_meta [S*3, 2] int32: (offset, R).
    sigma_weight [C*S]; dir_table [Hd, Wd, 3, C*S].
    density_mip [sum of gx*gy*gz] float32: bounds on the density (1/world unit) per
        cell, level 0 the finest grid, each level the max of 2x2x2 cells of the one
        below, each [gx, gy, gz] flattened C-order; mip_meta [L, 4] int32: (offset, gx,
        gy, gz) per level. A cell whose bound is 0 is empty.
    params [N_PARAMS] float32 (see the P_* indices).
    rgb_out [H, W, 3] uint8; depth_out [H, W] float32: expected ray distance of the
        visible surface, sum(w_i t_i) + (1 - sum(w_i)) * far (world units along the
        unit ray; the light that gets through counts at `far`); opacity_out [H, W] =
        sum(w_i); samples_out [H, W] int32: field evaluations of each ray.
    region [D, D, D] uint8: the dynamic region (1 = the loop lines act; 0 = static,
        lines read as ones); [1, 1, 1] of 1 for a file without one.
    n_channels, n_scales: C and S, compile-time (one kernel per (C, S): the channel
        loops unroll; Taichi's default build keeps them scalar, see
        `kernels.runtime.vector_codegen`).
    """
    n_feat = n_channels * n_scales
    height = rgb_out.shape[0]
    width = rgb_out.shape[1]
    table_h = dir_table.shape[0]
    table_w = dir_table.shape[1]
    for pix in range(height * width):
        row = pix // width
        col = pix % width
        origin, direction = camera_ray(params, row, col)
        on, dn, t_lo, t_hi, t_in_lo, t_in_hi, contracted = march_range(params, origin, direction)
        transmittance = 1.0
        acc_r = 0.0
        acc_g = 0.0
        acc_b = 0.0
        acc_t = 0.0
        t_med = -1.0  # median distance, once the transmittance crosses 1/2
        n_eval = 0
        if t_lo < t_hi:
            # Colour basis B(d) [3, C*S] for this ray: one bilinear lookup of the table
            # (the direction is fixed along the ray), then a dot product per sample.
            r0, r1, c0, c1, tw = direction_taps(direction, table_h, table_w)
            for ch in ti.static(range(3)):
                for j in range(n_feat):
                    basis_scratch[pix, ch, j] = table_lookup(dir_table, r0, r1, c0, c1, tw, ch, j)
            inv_dn, base_step, tau, skip, nudge, record = march_setup(params, dn)
            t = t_lo
            level = mip_meta.shape[0] - 1
            while t < t_hi:
                seg_end, n_pieces, found = march_segment(density_mip, mip_meta, on, dn, inv_dn, t, t_hi, t_in_lo, t_in_hi, contracted, nudge, base_step, tau, skip, level)
                level = resume_level(mip_meta, found)
                delta = (seg_end - t) / ti.max(n_pieces, 1)
                for i in range(n_pieces):
                    ts = t + (i + 0.5) * delta
                    xn = field_point(on + ts * dn, contracted)  # field coordinates
                    n_eval += 1
                    sigma_acc = 0.0
                    rd = region.shape[0]
                    vx = ti.min(ti.max(ti.cast(ti.floor((xn[0] + 1.0) * 0.5 * rd), ti.i32), 0), rd - 1)
                    vy = ti.min(ti.max(ti.cast(ti.floor((xn[1] + 1.0) * 0.5 * rd), ti.i32), 0), rd - 1)
                    vz = ti.min(ti.max(ti.cast(ti.floor((xn[2] + 1.0) * 0.5 * rd), ti.i32), 0), rd - 1)
                    moving = region[vx, vy, vz] != 0
                    for s in range(n_scales):
                        m_xy = s * 3
                        m_xz = s * 3 + 1
                        m_yz = s * 3 + 2
                        i_xy, w_xy = _bilinear_taps(xn[0], xn[1], static_meta[m_xy, 1], static_meta[m_xy, 2])
                        i_xz, w_xz = _bilinear_taps(xn[0], xn[2], static_meta[m_xz, 1], static_meta[m_xz, 2])
                        i_yz, w_yz = _bilinear_taps(xn[1], xn[2], static_meta[m_yz, 1], static_meta[m_yz, 2])
                        i_x, w_x = _linear_taps(xn[0], line_meta[m_xy, 1])
                        i_y, w_y = _linear_taps(xn[1], line_meta[m_xz, 1])
                        i_z, w_z = _linear_taps(xn[2], line_meta[m_yz, 1])
                        o_xy = i_xy * n_channels + static_meta[m_xy, 0]
                        o_xz = i_xz * n_channels + static_meta[m_xz, 0]
                        o_yz = i_yz * n_channels + static_meta[m_yz, 0]
                        o_x = i_x * n_channels + line_meta[m_xy, 0]
                        o_y = i_y * n_channels + line_meta[m_xz, 0]
                        o_z = i_z * n_channels + line_meta[m_yz, 0]
                        for c in range(n_channels):
                            f = (
                                _tap4(static_planes, o_xy, w_xy, c)
                                * _tap4(static_planes, o_xz, w_xz, c)
                                * _tap4(static_planes, o_yz, w_yz, c)
                            )
                            if moving:
                                f *= _tap2(lines, o_x, w_x, c) * _tap2(lines, o_y, w_y, c) * _tap2(lines, o_z, w_z, c)
                            feature_scratch[pix, s * n_channels + c] = f
                            sigma_acc += sigma_weight[s * n_channels + c] * f
                    sigma = ti.exp(ti.min(sigma_acc + params[P_SIGMA_BIAS] - 1.0, 80.0))
                    alpha = 1.0 - ti.exp(-sigma * delta)
                    weight = transmittance * alpha
                    if record:
                        record_visibility(visibility, mip_meta, xn, weight)
                    if weight > params[P_MIN_ALPHA]:
                        lr = 0.0
                        lg = 0.0
                        lb = 0.0
                        for j in range(n_feat):  # sigmoid(B(d) f)
                            f = feature_scratch[pix, j]
                            lr += f * basis_scratch[pix, 0, j]
                            lg += f * basis_scratch[pix, 1, j]
                            lb += f * basis_scratch[pix, 2, j]
                        acc_r += weight / (1.0 + ti.exp(-lr))
                        acc_g += weight / (1.0 + ti.exp(-lg))
                        acc_b += weight / (1.0 + ti.exp(-lb))
                    acc_t += weight * ts
                    t_med = median_crossing(t_med, transmittance, alpha, sigma, ts, delta)
                    transmittance *= 1.0 - alpha
                    if transmittance < params[P_STOP_T]:
                        break
                if transmittance < params[P_STOP_T]:
                    break
                t = seg_end
        write_pixel(params, rgb_out, depth_out, opacity_out, samples_out, row, col,
                    ti.Vector([acc_r, acc_g, acc_b]), acc_t, t_med, transmittance, n_eval,
                    ray_background(params, sky, direction))
