"""The Taichi kernel that ray-marches a baked loop at one loop phase.

One kernel, parallel over pixels (DESIGN §8: a CPU parallel loop needs thousands of
outer iterations to use every core). Per pixel it builds the camera ray (OpenGL
axes, pixel centres at +0.5), clips it to the scene box and [near, far], and walks
the fixed sample lattice t_k = near + (k + 0.5) * step, jumping over every empty
cell of the baked occupancy grid in one go (the jump lands on the same lattice, so
skipping changes nothing but the cost). At an occupied sample the features are

    f[s*C + c] = xy_s(x, y)[c] * xz_s(x, z)[c] * yz_s(y, z)[c]       (bilinear)
               * lx_s(x)[c] * ly_s(y)[c] * lz_s(z)[c]                 (linear)

where l*_s are the loop planes already collapsed on the host to the current phase
(`collapse_loop_planes`), so a sample costs 3 bilinear + 3 linear lookups per scale,
all channel-last with a plain `for c in range(C)` loop (the layout the CPU
vectorises). Density = exp(f . w + b - 1) (trunc_exp's forward); colour =
sigmoid(B(d) f) with B(d) [3, C*S] the bilinear lookup of the baked direction table,
evaluated only for samples whose alpha matters. The ray stops once transmittance
falls under 1e-3.

All arrays are passed as ndarrays (no copies) and flattened where their number
varies with the scene (scales), so one compiled kernel serves every .loop file.
"""



import taichi as ti

# Layout of the float32 `params` vector handed to the kernel (host and kernel agree
# on these indices; see `pack_params` in renderer.py).
P_C2W = 0  # 12 values: rows 0..2 of camera-to-world
P_FX, P_FY, P_CX, P_CY = 12, 13, 14, 15
P_BOX_MIN = 16  # 3 values, world units
P_BOX_MAX = 19  # 3 values
P_NEAR, P_FAR, P_STEP = 22, 23, 24
P_SIGMA_BIAS = 25
P_BG = 26  # 3 values in [0, 1]
P_MIN_ALPHA = 29  # a sample whose weight T*alpha is below this skips its colour
P_STOP_T = 30  # transmittance under which a ray stops (1e-3)
N_PARAMS = 31


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


@ti.kernel
def render_loop_kernel(
    static_planes: ti.types.ndarray(dtype=ti.f32, ndim=1),
    static_meta: ti.types.ndarray(dtype=ti.i32, ndim=2),
    lines: ti.types.ndarray(dtype=ti.f32, ndim=1),
    line_meta: ti.types.ndarray(dtype=ti.i32, ndim=2),
    sigma_weight: ti.types.ndarray(dtype=ti.f32, ndim=1),
    dir_table: ti.types.ndarray(dtype=ti.f32, ndim=4),
    occupancy: ti.types.ndarray(dtype=ti.u8, ndim=3),
    params: ti.types.ndarray(dtype=ti.f32, ndim=1),
    feature_scratch: ti.types.ndarray(dtype=ti.f32, ndim=2),
    rgb_out: ti.types.ndarray(dtype=ti.u8, ndim=3),
    depth_out: ti.types.ndarray(dtype=ti.f32, ndim=2),
    opacity_out: ti.types.ndarray(dtype=ti.f32, ndim=2),
    n_channels: ti.i32,
    n_scales: ti.i32,
):
    """Render one image of the loop at the phase its `lines` were collapsed to.

    static_planes [sum of H*W*C] float32: planes xy, xz, yz of every scale, each
        [H, W, C] flattened; static_meta [S*3, 3] int32: (offset, W, H) per plane in
        that order (pair (i, j): coordinate i indexes W, j indexes H).
    lines [sum of R*C] float32: the loop planes xt, yt, zt of every scale collapsed to
        one phase, each [R, C]; line_meta [S*3, 2] int32: (offset, R).
    sigma_weight [C*S]; dir_table [Hd, Wd, 3, C*S]; occupancy [Gx, Gy, Gz] uint8.
    params [N_PARAMS] float32 (see the P_* indices); feature_scratch [H*W, C*S]: one
        row of per-sample features per pixel (only that pixel's thread touches it).
    rgb_out [H, W, 3] uint8; depth_out [H, W] float32: expected ray distance of the
        visible surface, sum(w_i t_i) + (1 - sum(w_i)) * far (world units along the
        unit ray; the light that gets through counts at `far`); opacity_out [H, W] =
        sum(w_i).
    """
    height = rgb_out.shape[0]
    width = rgb_out.shape[1]
    n_feat = n_channels * n_scales
    grid_x = occupancy.shape[0]
    grid_y = occupancy.shape[1]
    grid_z = occupancy.shape[2]
    table_h = dir_table.shape[0]
    table_w = dir_table.shape[1]
    for pix in range(height * width):
        row = pix // width
        col = pix % width
        # Camera ray in world space (OpenGL: looks down -Z, +Y up).
        dcx = (col + 0.5 - params[P_CX]) / params[P_FX]
        dcy = -(row + 0.5 - params[P_CY]) / params[P_FY]
        dcz = -1.0
        dx = params[0] * dcx + params[1] * dcy + params[2] * dcz
        dy = params[4] * dcx + params[5] * dcy + params[6] * dcz
        dz = params[8] * dcx + params[9] * dcy + params[10] * dcz
        inv_len = 1.0 / ti.sqrt(dx * dx + dy * dy + dz * dz)
        dx *= inv_len
        dy *= inv_len
        dz *= inv_len
        origin = ti.Vector([params[3], params[7], params[11]])
        box_min = ti.Vector([params[P_BOX_MIN], params[P_BOX_MIN + 1], params[P_BOX_MIN + 2]])
        box_max = ti.Vector([params[P_BOX_MAX], params[P_BOX_MAX + 1], params[P_BOX_MAX + 2]])
        scale = 2.0 / (box_max - box_min)
        # Ray in the normalised cube: xn(t) = on + t * dn.
        on = (origin - box_min) * scale - 1.0
        dn = ti.Vector([dx, dy, dz]) * scale
        t_lo = params[P_NEAR]
        t_hi = params[P_FAR]
        for a in ti.static(range(3)):
            if ti.abs(dn[a]) > 1e-12:
                ta = (-1.0 - on[a]) / dn[a]
                tb = (1.0 - on[a]) / dn[a]
                t_lo = ti.max(t_lo, ti.min(ta, tb))
                t_hi = ti.min(t_hi, ti.max(ta, tb))
            elif ti.abs(on[a]) > 1.0:
                t_hi = -1.0  # parallel to this slab and outside it: misses the box

        # Direction-table taps, once per ray (the direction is fixed along it).
        theta = ti.acos(ti.math.clamp(dy, -1.0, 1.0))
        trow = ti.math.clamp(theta / 3.141592653589793 * (table_h - 1), 0.0, ti.cast(table_h - 1, ti.f32))
        r0 = ti.min(ti.cast(ti.floor(trow), ti.i32), ti.max(table_h - 2, 0))
        r1 = ti.min(r0 + 1, table_h - 1)
        ar = trow - r0
        tcol = (ti.atan2(dz, dx) + 3.141592653589793) / (2.0 * 3.141592653589793) * table_w
        c0f = ti.floor(tcol)
        ac = tcol - c0f
        c0 = ti.cast(c0f, ti.i32) % table_w
        c1 = (c0 + 1) % table_w
        w00 = (1 - ar) * (1 - ac)
        w01 = (1 - ar) * ac
        w10 = ar * (1 - ac)
        w11 = ar * ac

        step = params[P_STEP]
        near = params[P_NEAR]
        transmittance = 1.0
        acc_r = 0.0
        acc_g = 0.0
        acc_b = 0.0
        acc_t = 0.0
        k = ti.max(ti.cast(ti.ceil((t_lo - near) / step - 0.5), ti.i32), 0)
        while t_lo < t_hi:
            t = near + (k + 0.5) * step
            if t >= t_hi:
                break
            xn = on + t * dn
            ix = ti.math.clamp(ti.cast(ti.floor((xn[0] + 1.0) * 0.5 * grid_x), ti.i32), 0, grid_x - 1)
            iy = ti.math.clamp(ti.cast(ti.floor((xn[1] + 1.0) * 0.5 * grid_y), ti.i32), 0, grid_y - 1)
            iz = ti.math.clamp(ti.cast(ti.floor((xn[2] + 1.0) * 0.5 * grid_z), ti.i32), 0, grid_z - 1)
            if occupancy[ix, iy, iz] == 0:
                # Jump to the first lattice sample past this empty cell's exit.
                cell = ti.Vector([ix, iy, iz])
                dims = ti.Vector([grid_x, grid_y, grid_z])
                t_exit = t_hi
                for a in ti.static(range(3)):
                    if dn[a] > 1e-12:
                        t_exit = ti.min(t_exit, (-1.0 + 2.0 * (cell[a] + 1) / dims[a] - on[a]) / dn[a])
                    elif dn[a] < -1e-12:
                        t_exit = ti.min(t_exit, (-1.0 + 2.0 * cell[a] / dims[a] - on[a]) / dn[a])
                k = ti.max(k + 1, ti.cast(ti.ceil((t_exit - near) / step - 0.5), ti.i32))
                continue
            # Features and density.
            sigma_acc = 0.0
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
                base = s * n_channels
                for c in range(n_channels):
                    f_xy = (
                        w_xy[0] * static_planes[o_xy[0] + c]
                        + w_xy[1] * static_planes[o_xy[1] + c]
                        + w_xy[2] * static_planes[o_xy[2] + c]
                        + w_xy[3] * static_planes[o_xy[3] + c]
                    )
                    f_xz = (
                        w_xz[0] * static_planes[o_xz[0] + c]
                        + w_xz[1] * static_planes[o_xz[1] + c]
                        + w_xz[2] * static_planes[o_xz[2] + c]
                        + w_xz[3] * static_planes[o_xz[3] + c]
                    )
                    f_yz = (
                        w_yz[0] * static_planes[o_yz[0] + c]
                        + w_yz[1] * static_planes[o_yz[1] + c]
                        + w_yz[2] * static_planes[o_yz[2] + c]
                        + w_yz[3] * static_planes[o_yz[3] + c]
                    )
                    f_t = (
                        (w_x[0] * lines[o_x[0] + c] + w_x[1] * lines[o_x[1] + c])
                        * (w_y[0] * lines[o_y[0] + c] + w_y[1] * lines[o_y[1] + c])
                        * (w_z[0] * lines[o_z[0] + c] + w_z[1] * lines[o_z[1] + c])
                    )
                    f = f_xy * f_xz * f_yz * f_t
                    feature_scratch[pix, base + c] = f
                    sigma_acc += sigma_weight[base + c] * f
            sigma = ti.exp(ti.min(sigma_acc + params[P_SIGMA_BIAS] - 1.0, 80.0))
            alpha = 1.0 - ti.exp(-sigma * step)
            weight = transmittance * alpha
            if weight > params[P_MIN_ALPHA]:
                # Colour: sigmoid(B(d) f), B(d) bilinear in the direction table.
                lr = 0.0
                lg = 0.0
                lb = 0.0
                for j in range(n_feat):
                    f = feature_scratch[pix, j]
                    lr += f * (
                        w00 * dir_table[r0, c0, 0, j]
                        + w01 * dir_table[r0, c1, 0, j]
                        + w10 * dir_table[r1, c0, 0, j]
                        + w11 * dir_table[r1, c1, 0, j]
                    )
                    lg += f * (
                        w00 * dir_table[r0, c0, 1, j]
                        + w01 * dir_table[r0, c1, 1, j]
                        + w10 * dir_table[r1, c0, 1, j]
                        + w11 * dir_table[r1, c1, 1, j]
                    )
                    lb += f * (
                        w00 * dir_table[r0, c0, 2, j]
                        + w01 * dir_table[r0, c1, 2, j]
                        + w10 * dir_table[r1, c0, 2, j]
                        + w11 * dir_table[r1, c1, 2, j]
                    )
                acc_r += weight / (1.0 + ti.exp(-lr))
                acc_g += weight / (1.0 + ti.exp(-lg))
                acc_b += weight / (1.0 + ti.exp(-lb))
            acc_t += weight * t
            transmittance *= 1.0 - alpha
            if transmittance < params[P_STOP_T]:
                break
            k += 1
        opacity = 1.0 - transmittance
        r = acc_r + transmittance * params[P_BG]
        g = acc_g + transmittance * params[P_BG + 1]
        b = acc_b + transmittance * params[P_BG + 2]
        rgb_out[row, col, 0] = ti.cast(ti.math.clamp(r * 255.0 + 0.5, 0.0, 255.0), ti.u8)
        rgb_out[row, col, 1] = ti.cast(ti.math.clamp(g * 255.0 + 0.5, 0.0, 255.0), ti.u8)
        rgb_out[row, col, 2] = ti.cast(ti.math.clamp(b * 255.0 + 0.5, 0.0, 255.0), ti.u8)
        # The reference renderer's convention: what the rays miss counts at `far`.
        depth_out[row, col] = acc_t + transmittance * params[P_FAR]
        opacity_out[row, col] = opacity
