"""Taichi functions shared by the viewer's kernels: camera rays, the box, the march.

Imports taichi (load it lazily, as the kernels do). The `params` vector layout is
owned here (P_* indices); both kernels and `renderer.py` read it from this module.

- `camera_ray`: the world ray of pixel (row, col), OpenGL axes, pixel centres at +0.5,
  unit direction.
- `box_interval`: the ray in the normalised cube (box -> [-1, 1]^3) and its [t_lo, t_hi]
  inside the box and [near, far].
- Unbounded scenes (params[P_CONTRACT] > 0, the `.loop`'s contraction 'mipnerf360'):
  the planes and grids live in contracted coordinates (`field_point`, the twin of
  `loopnerf.fields.field.contract`), where the box is the middle half of the cube and
  everything beyond it lies in the shell out to the cube's faces. `march_range` gives
  the ray's [near, far] and the part inside the box; `march_segment` marches the box
  part by the pyramid (`next_segment`, the map is linear there) and the shell part in
  steps of half a level-0 cell of contracted space (`shell_segment`: world steps grow
  with distance, as in MERF).
- `next_segment`: the max-pyramid step (see `renderer.density_pyramid`): at distance t
  the coarsest cell, from the level `resume_level` gives down, that is empty or faint
  enough for one sample, else the finest cell split into samples at max(step, tau / bound).
- `median_crossing` / `write_pixel`: the depth a pixel reports, expected (sum w_i t_i,
  misses at far) or median (where the transmittance crosses 1/2).
- `direction_taps`: the four cells and weights of a bilinear lookup in the lat-long
  direction table.
"""

import taichi as ti

# Layout of the float32 `params` vector handed to the kernels.
P_C2W = 0  # 12 values: rows 0..2 of camera-to-world
P_FX, P_FY, P_CX, P_CY = 12, 13, 14, 15
P_BOX_MIN = 16  # 3 values, world units
P_BOX_MAX = 19  # 3 values
P_NEAR, P_FAR, P_STEP = 22, 23, 24
P_SIGMA_BIAS = 25
P_BG = 26  # 3 values in [0, 1]
P_MIN_ALPHA = 29  # colour lookups: planes skip samples weighing less; bricks share one per this much weight
P_STOP_T = 30  # transmittance under which a ray stops
P_TAU = 31  # most optical depth one sample may cover (sigma bound * its length)
P_SKIP = 32  # a cell whose optical-depth bound along the ray is under this is skipped
P_RECORD = 33  # > 0: record each sample's weight into the visibility grid (max per cell)
P_DEPTH_MEDIAN = 34  # > 0: depth_out is the median distance (`median_crossing`), else the expected one
P_CONTRACT = 35  # > 0: the scene is unbounded (contraction 'mipnerf360', see `field_point`)
P_LIGHT_FLOOR = 36  # > 0: a step's optical-depth budget grows as the ray's light runs out (`light_scaled`)
N_PARAMS = 37

PI = 3.141592653589793


@ti.func
def camera_ray(params: ti.template(), row: ti.i32, col: ti.i32):
    """(origin [3], unit direction [3]) in world space of pixel (row, col)."""
    dcx = (col + 0.5 - params[P_CX]) / params[P_FX]
    dcy = -(row + 0.5 - params[P_CY]) / params[P_FY]
    dcz = -1.0
    d = ti.Vector([
        params[0] * dcx + params[1] * dcy + params[2] * dcz,
        params[4] * dcx + params[5] * dcy + params[6] * dcz,
        params[8] * dcx + params[9] * dcy + params[10] * dcz,
    ])
    d = d / ti.sqrt(d.dot(d))
    return ti.Vector([params[3], params[7], params[11]]), d


@ti.func
def box_interval(params: ti.template(), origin, direction):
    """(on, dn, t_lo, t_hi): the ray as xn(t) = on + t dn in the normalised cube, and
    the part of it inside the cube and [near, far] (t_lo >= t_hi: it misses)."""
    box_min = ti.Vector([params[P_BOX_MIN], params[P_BOX_MIN + 1], params[P_BOX_MIN + 2]])
    box_max = ti.Vector([params[P_BOX_MAX], params[P_BOX_MAX + 1], params[P_BOX_MAX + 2]])
    scale = 2.0 / (box_max - box_min)
    on = (origin - box_min) * scale - 1.0
    dn = direction * scale
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
    return on, dn, t_lo, t_hi


@ti.func
def field_point(xn, contracted):
    """The field coordinates of normalised point xn: xn itself for a bounded scene;
    for contraction 'mipnerf360' (L-inf norm n = max |xn_a|) 0.5 xn inside the box and
    0.5 (2 - 1/n) xn / n beyond it (`loopnerf.fields.field.contract`)."""
    y = xn
    if contracted:
        n = ti.max(ti.max(ti.abs(xn[0]), ti.abs(xn[1])), ti.abs(xn[2]))
        y = 0.5 * xn
        if n > 1.0:
            y = 0.5 * (2.0 - 1.0 / n) / n * xn
    return y


@ti.func
def march_range(params: ti.template(), origin, direction):
    """(on, dn, t_lo, t_hi, t_in_lo, t_in_hi, contracted): the ray in the normalised
    cube, the range to march and the part of it inside the box. Bounded scenes march
    the box only (both ranges the box's, `box_interval`); unbounded ones [near, far]."""
    on, dn, t_in_lo, t_in_hi = box_interval(params, origin, direction)
    contracted = params[P_CONTRACT] > 0.0
    t_lo = t_in_lo
    t_hi = t_in_hi
    if contracted:
        t_lo = params[P_NEAR]
        t_hi = params[P_FAR]
    return on, dn, t_lo, t_hi, t_in_lo, t_in_hi, contracted


@ti.func
def shell_segment(density_mip: ti.template(), mip_meta: ti.template(), on, dn, t, t_stop, base_step, tau, skip):
    """(seg_end, n_pieces) of the march at distance t in the contracted shell (beyond the
    box): a piece of half a level-0 cell of contracted space, its world length from the
    contraction's derivative along the ray (so steps grow roughly with distance^2),
    ended early at t_stop. Its samples: none when the level-0 cells at both ends bound
    its optical depth under `skip`, else one per `tau` of the larger bound (and no
    shorter than `base_step`, in field units)."""
    x = on + t * dn
    ax = ti.abs(x)
    k = 0
    if ax[1] > ax[k]:
        k = 1
    if ax[2] > ax[k]:
        k = 2
    n = ti.max(ax[k], 1.0)
    inv = 1.0 / n
    dn_dt = ti.select(x[k] >= 0.0, dn[k], -dn[k])
    # d/dt of 0.5 (2 - 1/n) x / n with n = |x_k|: the contraction's Jacobian times dn.
    jac = 0.5 * (dn_dt * inv * inv * inv * x + (2.0 - inv) * (dn * inv - x * (dn_dt * inv * inv)))
    speed = ti.max(ti.sqrt(jac.dot(jac)), 1e-12)
    cell = 2.0 / ti.cast(ti.max(ti.max(mip_meta[0, 1], mip_meta[0, 2]), mip_meta[0, 3]), ti.f32)
    seg_end = ti.min(t + 0.5 * cell / speed, t_stop)
    bound = 0.0
    for end in ti.static(range(2)):
        y = field_point(on + ti.select(end == 0, t, seg_end) * dn, True)
        bound = ti.max(bound, density_mip[mip_meta[0, 0] + level0_cell(mip_meta, y)])
    seg = seg_end - t
    n_pieces = 0
    if bound * seg > skip:
        piece = ti.max(base_step / speed, tau / bound)
        n_pieces = ti.max(ti.cast(ti.ceil(seg / piece), ti.i32), 1)
    return seg_end, n_pieces


@ti.func
def march_segment(density_mip: ti.template(), mip_meta: ti.template(), on, dn, inv_dn, t, t_hi, t_in_lo, t_in_hi,
                  contracted, nudge, base_step, tau, skip, level):
    """(seg_end, n_pieces, level) of the march at distance t: `next_segment` inside the
    box (in field coordinates, the box halved when contracted), `shell_segment` beyond it
    (up to the box's entry when the ray is still outside it)."""
    seg_end = t_hi
    n_pieces = 0
    found = level
    if t >= t_in_lo and t < t_in_hi:
        fs = ti.select(contracted, 0.5, 1.0)
        seg_end, n_pieces, found = next_segment(
            density_mip, mip_meta, fs * on, fs * dn, inv_dn / fs, t, ti.min(t_hi, t_in_hi), nudge, base_step, tau, skip, level)
    else:
        stop = t_hi
        if t < t_in_lo and t_in_lo < t_in_hi:
            stop = ti.min(stop, t_in_lo)
        # base_step is world units inside the box: 0.5 |dn| field units there, along this ray
        seg_end, n_pieces = shell_segment(density_mip, mip_meta, on, dn, t, stop, base_step * 0.5 * ti.sqrt(dn.dot(dn)), tau, skip)
        seg_end = ti.max(seg_end, t + nudge)
    return seg_end, n_pieces, found


@ti.func
def next_segment(density_mip: ti.template(), mip_meta: ti.template(), on, dn, inv_dn, t, t_hi, nudge, base_step, tau, skip, lv_start):
    """(seg_end, n_pieces, level) of the march at distance t.

    From pyramid level `lv_start` down, the first cell at t whose optical-depth
    bound bound * (exit - t) is <= skip (n_pieces 0: skipped) or <= tau (1 sample);
    in a level-0 cell that is neither, ceil(length / max(base_step, tau / bound)).
    `level` is where the search stopped: the caller starts the next one a level
    above it (`resume_level`), so a march through dense cells does not descend the
    whole pyramid at every cell, and one leaving them climbs back a level a cell."""
    n_levels = mip_meta.shape[0]
    level0 = ti.Vector([mip_meta[0, 1], mip_meta[0, 2], mip_meta[0, 3]])
    probe = on + (t + nudge) * dn
    seg_end = t_hi
    n_pieces = 0
    lv = ti.min(lv_start, n_levels - 1)
    while lv >= 0:
        off = mip_meta[lv, 0]
        dims = ti.Vector([mip_meta[lv, 1], mip_meta[lv, 2], mip_meta[lv, 3]])
        # Level lv's cells are 2^lv level-0 cells wide (a padded last cell reaches past
        # the box, which rays never sample).
        geo = ti.cast(level0, ti.f32) / ti.cast(1 << lv, ti.f32)
        cell = ti.Vector([0, 0, 0])
        for a in ti.static(range(3)):
            cell[a] = ti.math.clamp(ti.cast(ti.floor((probe[a] + 1.0) * 0.5 * geo[a]), ti.i32), 0, dims[a] - 1)
        bound = density_mip[off + (cell[0] * dims[1] + cell[1]) * dims[2] + cell[2]]
        t_exit = t_hi
        for a in ti.static(range(3)):
            if dn[a] > 1e-12:
                t_exit = ti.min(t_exit, (-1.0 + 2.0 * (cell[a] + 1) / geo[a] - on[a]) * inv_dn[a])
            elif dn[a] < -1e-12:
                t_exit = ti.min(t_exit, (-1.0 + 2.0 * cell[a] / geo[a] - on[a]) * inv_dn[a])
        t_exit = ti.max(t_exit, t + nudge)  # always move on
        seg = t_exit - t
        seg_end = t_exit
        if bound * seg <= skip:
            n_pieces = 0  # at most `skip` of optical depth: nothing to see
            break
        if bound * seg <= tau:
            n_pieces = 1  # one sample covers the whole cell
            break
        if lv == 0:
            piece = ti.max(base_step, tau / bound)
            n_pieces = ti.max(ti.cast(ti.ceil(seg / piece), ti.i32), 1)
            break
        lv -= 1
    return seg_end, n_pieces, lv


@ti.func
def resume_level(mip_meta: ti.template(), level):
    """The pyramid level the next `next_segment` starts from: one above the last one's."""
    return ti.min(level + 1, mip_meta.shape[0] - 1)


@ti.func
def level0_cell(mip_meta: ti.template(), y):
    """Flat index, within pyramid level 0 (the occupancy grid), of the cell holding field
    point y [3] in [-1, 1]^3 (clamped to the grid)."""
    gx = mip_meta[0, 1]
    gy = mip_meta[0, 2]
    gz = mip_meta[0, 3]
    ix = ti.math.clamp(ti.cast(ti.floor((y[0] + 1.0) * 0.5 * gx), ti.i32), 0, gx - 1)
    iy = ti.math.clamp(ti.cast(ti.floor((y[1] + 1.0) * 0.5 * gy), ti.i32), 0, gy - 1)
    iz = ti.math.clamp(ti.cast(ti.floor((y[2] + 1.0) * 0.5 * gz), ti.i32), 0, gz - 1)
    return (ix * gy + iy) * gz + iz


@ti.func
def record_visibility(visibility: ti.template(), mip_meta: ti.template(), xn, weight: ti.f32):
    """Max `weight` into the level-0 pyramid cell holding field point xn."""
    ti.atomic_max(visibility[level0_cell(mip_meta, xn)], weight)


@ti.func
def direction_taps(direction, table_h: ti.i32, table_w: ti.i32):
    """Rows r0, r1, columns c0, c1 and the four bilinear weights (w00, w01, w10, w11)
    of a unit direction in the lat-long table (row theta / pi * (Hd - 1), theta =
    acos(d_y); column (atan2(d_z, d_x) + pi) / (2 pi) * Wd, periodic)."""
    theta = ti.acos(ti.math.clamp(direction[1], -1.0, 1.0))
    trow = ti.math.clamp(theta / PI * (table_h - 1), 0.0, ti.cast(table_h - 1, ti.f32))
    r0 = ti.min(ti.cast(ti.floor(trow), ti.i32), ti.max(table_h - 2, 0))
    r1 = ti.min(r0 + 1, table_h - 1)
    ar = trow - r0
    tcol = (ti.atan2(direction[2], direction[0]) + PI) / (2.0 * PI) * table_w
    c0f = ti.floor(tcol)
    ac = tcol - c0f
    c0 = ti.cast(c0f, ti.i32) % table_w
    c1 = (c0 + 1) % table_w
    return r0, r1, c0, c1, ti.Vector([(1 - ar) * (1 - ac), (1 - ar) * ac, ar * (1 - ac), ar * ac])


@ti.func
def table_lookup(table: ti.template(), r0, r1, c0, c1, tw, ch, j):
    """Entry [ch, j] of a lat-long direction table [Hd, Wd, 3, n], bilinear with the
    taps of `direction_taps`."""
    return (tw[0] * table[r0, c0, ch, j] + tw[1] * table[r0, c1, ch, j]
            + tw[2] * table[r1, c0, ch, j] + tw[3] * table[r1, c1, ch, j])


@ti.func
def march_setup(params: ti.template(), dn):
    """(inv_dn, base_step, tau, skip, nudge, record) of a march: the ray's inverse
    direction (0 on axes it is parallel to), the P_STEP / P_TAU / P_SKIP thresholds, the
    small nudge that moves t into the next cell, and whether visibility is recorded."""
    inv_dn = ti.Vector([0.0, 0.0, 0.0])
    for a in ti.static(range(3)):
        inv_dn[a] = ti.select(ti.abs(dn[a]) > 1e-12, 1.0 / dn[a], 0.0)
    base_step = params[P_STEP]
    return inv_dn, base_step, params[P_TAU], params[P_SKIP], 1e-4 * base_step, params[P_RECORD] > 0.0


@ti.func
def light_scaled(params: ti.template(), tau: ti.f32, skip: ti.f32, transmittance: ti.f32):
    """(tau, skip) for the next step of a ray that has `transmittance` of its light left.

    What a sample adds to the pixel is T * alpha, so an error in its alpha costs the
    pixel T times as much: a step may cover 1 / T more optical depth (and a cell be
    skipped below 1 / T more) for the same error in the pixel. T is floored at
    params[P_LIGHT_FLOOR] (0: unscaled, the exact renderers and visibility recording)."""
    floor = params[P_LIGHT_FLOOR]
    scale = 1.0
    if floor > 0.0:
        scale = 1.0 / ti.max(transmittance, floor)
    return tau * scale, skip * scale


@ti.func
def median_crossing(t_med: ti.f32, transmittance: ti.f32, alpha: ti.f32, sigma: ti.f32, ts: ti.f32, delta: ti.f32) -> ti.f32:
    """The ray's median distance so far: unchanged once found (>= 0); else, when this
    sample (centre ts, length delta, density sigma, alpha) takes the transmittance from
    `transmittance` (>= 1/2) under 1/2, the distance inside it where it crosses 1/2 for a
    constant density, ts - delta / 2 + ln(2 T) / sigma; else -1 (not yet)."""
    out = t_med
    if t_med < 0.0 and transmittance * (1.0 - alpha) < 0.5:
        out = ts - 0.5 * delta + ti.min(ti.log(2.0 * transmittance) / ti.max(sigma, 1e-12), delta)
    return out


@ti.func
def ray_background(params: ti.template(), sky: ti.template(), direction):
    """RGB [3] behind the field along unit `direction`: the file's sky [Hs, Ws, 3]
    (bilinear in its lat-long map, `direction_taps`) when it has one (Hs >= 2), else the
    header's background colour (params[P_BG..])."""
    bg = ti.Vector([params[P_BG], params[P_BG + 1], params[P_BG + 2]])
    if sky.shape[0] >= 2:
        r0, r1, c0, c1, tw = direction_taps(direction, sky.shape[0], sky.shape[1])
        for ch in ti.static(range(3)):
            bg[ch] = tw[0] * sky[r0, c0, ch] + tw[1] * sky[r0, c1, ch] + tw[2] * sky[r1, c0, ch] + tw[3] * sky[r1, c1, ch]
    return bg


@ti.func
def write_pixel(params: ti.template(), rgb_out: ti.template(), depth_out: ti.template(), opacity_out: ti.template(),
                samples_out: ti.template(), row: ti.i32, col: ti.i32, acc, acc_t: ti.f32, t_med: ti.f32,
                transmittance: ti.f32, n_eval: ti.i32, bg):
    """Composite over the background `bg` (`ray_background`) and write one pixel's
    outputs. Depth: with params[P_DEPTH_MEDIAN] > 0 the median distance `t_med` (`far`
    where the opacity never reaches 1/2), else the expected distance with what the rays
    miss counted at `far` (the reference renderer's convention)."""
    for ch in ti.static(range(3)):
        v = acc[ch] + transmittance * bg[ch]
        rgb_out[row, col, ch] = ti.cast(ti.math.clamp(v * 255.0 + 0.5, 0.0, 255.0), ti.u8)
    if params[P_DEPTH_MEDIAN] > 0.0:
        depth_out[row, col] = ti.select(t_med >= 0.0, t_med, params[P_FAR])
    else:
        depth_out[row, col] = acc_t + transmittance * params[P_FAR]
    opacity_out[row, col] = 1.0 - transmittance
    samples_out[row, col] = n_eval
