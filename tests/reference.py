"""Independent NumPy reference implementations (float64) of PySNN's equations, used by the tests.

Nothing here imports pysnn: every function is written from SPEC.md and the PySNN 0.1.1 reference,
with explicit loops where the layout is the point (unfolding, delays, pooling).

The modules store their parameters in the default dtype (float32) and the tests convert them
with ``.double()`` afterwards, so a parameter such as 0.9 really is ``float32(0.9)``;
:func:`f32` applies the same rounding to the reference's parameters.
"""

from typing import List, Sequence, Tuple

import numpy as np


def f32(value) -> np.ndarray:
    """``value`` rounded to float32 and widened back to float64 (how the modules store it)."""
    return np.asarray(value, dtype=np.float32).astype(np.float64)


def as_np(tensor) -> np.ndarray:
    """A torch tensor (or array) as a float64/bool NumPy array."""
    array = tensor.detach().cpu().numpy() if hasattr(tensor, "detach") else np.asarray(tensor)
    return array if array.dtype == bool else array.astype(np.float64)


# -- neurons -----------------------------------------------------------------------------------
class NeuronRef:
    """One population of IF / LIF / adaptive LIF / Fede neurons, stepped in PySNN's order.

    fold input → voltage (with the counts of the previous step) → spikes (v >= thresh) → trace
    (and threshold) from the new spikes → refractory counts and reset → history.

    :param kind: ``"if"``, ``"lif"``, ``"adaptive"`` or ``"fede"``.
    :param refrac_steps: refractory period in steps (duration_refrac / dt).
    """

    def __init__(
        self,
        kind: str,
        cells_shape: Tuple[int, ...],
        thresh,
        v_rest: float,
        alpha_v,
        alpha_t,
        dt: float,
        refrac_steps: int,
        tau_t,
        tau_v=None,
        update_type: str = "linear",
        alpha_thresh=None,
        tau_thresh=None,
        relax_to_center: bool = False,
    ) -> None:
        def cells(value):
            return np.broadcast_to(f32(value), cells_shape).copy()

        self.kind = kind
        self.update_type = "exponential" if kind == "fede" else update_type
        self.shape = cells_shape
        self.thresh = cells(thresh)
        self.center = cells(thresh)
        self.v_rest = float(f32(v_rest))
        self.alpha_v = cells(alpha_v)
        self.alpha_t = cells(alpha_t)
        self.tau_t = cells(tau_t)
        self.tau_v = None if tau_v is None else cells(tau_v)
        self.alpha_thresh = None if alpha_thresh is None else cells(alpha_thresh)
        self.tau_thresh = None if tau_thresh is None else cells(tau_thresh)
        self.relax_to_center = relax_to_center
        self.dt = float(f32(dt))
        self.k = refrac_steps
        self.v = np.full(cells_shape, self.v_rest)
        self.trace = np.zeros(cells_shape)
        self.counts = np.zeros(cells_shape, dtype=np.int64)
        self.history: List[np.ndarray] = [np.zeros(cells_shape, dtype=bool)]

    def _decay(self, value, x, alpha, tau):
        """The trace/threshold equation of the update type (one Euler step or one decay)."""
        if self.update_type == "linear":
            return value * tau + alpha * x
        return value + (self.dt / tau) * (-value + alpha * x)

    def step(self, x, pre_trace=None) -> Tuple[np.ndarray, np.ndarray]:
        """One step; ``x`` (and ``pre_trace`` for Fede) are arrays with the fan-in last, or lists."""
        if isinstance(x, (list, tuple)):
            x = np.concatenate(x, axis=-1)
        if isinstance(pre_trace, (list, tuple)):
            pre_trace = np.concatenate(pre_trace, axis=-1)
        free = self.counts == 0
        if self.kind == "fede":
            drive = (x - pre_trace).sum(-1)
        else:
            drive = x.sum(-1)
        v = self.v
        if self.kind == "if":
            v = np.where(free, v + self.alpha_v * drive, v)
        elif self.update_type == "linear":
            # PySNN holds refractory cells at exactly v_rest in the linear LIF
            v = np.where(
                free,
                self.v_rest + (v - self.v_rest) * self.tau_v + self.alpha_v * drive,
                self.v_rest,
            )
        else:
            v = np.where(
                free,
                v + (self.dt / self.tau_v) * (-(v - self.v_rest) + self.alpha_v * drive),
                v,
            )
        spikes = v >= self.thresh
        s = spikes.astype(np.float64)
        self.trace = self._decay(self.trace, s, self.alpha_t, self.tau_t)
        if self.kind == "adaptive":
            base = self.center if self.relax_to_center else 0.0
            self.thresh = base + self._decay(
                self.thresh - base, s, self.alpha_thresh, self.tau_thresh
            )
        if self.k > 0:
            self.counts = np.maximum(self.counts - 1, 0) + self.k * spikes
        v = np.where(spikes, self.v_rest, v)
        self.v = v
        self.history.append(spikes)
        return spikes, self.trace.copy()


def input_trace_ref(xs: Sequence[np.ndarray], alpha_t, tau_t, dt, update_type) -> List[np.ndarray]:
    """Traces of an Input layer fed with the (graded) inputs ``xs``, one per step."""
    alpha_t, tau_t, dt = f32(alpha_t), f32(tau_t), f32(dt)
    trace = np.zeros_like(xs[0], dtype=np.float64)
    out = []
    for x in xs:
        if update_type == "linear":
            trace = trace * tau_t + alpha_t * x
        else:
            trace = trace + (dt / tau_t) * (-trace + alpha_t * x)
        out.append(trace.copy())
    return out


# -- delays ------------------------------------------------------------------------------------
def delayed_linear(history: Sequence[np.ndarray], delay, out_features: int) -> np.ndarray:
    """Spikes reaching each synapse of a Linear connection now, ``(B, O, I)``.

    :param history: presynaptic spikes ``(B, I)`` of every step so far, the current one last.
    :param delay: int, or ``(O, I)`` integer array of per-synapse delays in steps.
    """
    t = len(history) - 1
    batch, n_in = history[-1].shape
    delay = np.broadcast_to(np.asarray(delay), (out_features, n_in))
    out = np.zeros((batch, out_features, n_in))
    for o in range(out_features):
        for i in range(n_in):
            src = t - int(delay[o, i])
            if src >= 0:
                out[:, o, i] = history[src][:, i]
    return out


# -- convolution -------------------------------------------------------------------------------
def unfold_ref(x: np.ndarray, kernel, stride, padding, dilation) -> np.ndarray:
    """im2col with torch's row order: ``(B, C, H, W)`` → ``(B, K, L)``, K = (c, i, j), L = (h, w)."""
    kh, kw = kernel
    sh, sw = stride
    ph, pw = padding
    dh, dw = dilation
    batch, channels, height, width = x.shape
    padded = np.zeros((batch, channels, height + 2 * ph, width + 2 * pw))
    padded[:, :, ph : ph + height, pw : pw + width] = x
    h_out = (height + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    w_out = (width + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    cols = np.zeros((batch, channels * kh * kw, h_out * w_out))
    for c in range(channels):
        for i in range(kh):
            for j in range(kw):
                k = (c * kh + i) * kw + j
                for h in range(h_out):
                    for w in range(w_out):
                        cols[:, k, h * w_out + w] = padded[:, c, h * sh + i * dh, w * sw + j * dw]
    return cols


def conv_out_shape(im_dims, kernel, stride, padding, dilation) -> Tuple[int, int]:
    """Output size of a 2-D convolution (floor formula)."""
    return tuple(
        (im_dims[n] + 2 * padding[n] - dilation[n] * (kernel[n] - 1) - 1) // stride[n] + 1
        for n in range(2)
    )


# -- pooling -----------------------------------------------------------------------------------
def _select(spk: np.ndarray, trc: np.ndarray) -> Tuple[bool, float]:
    """Window rule: any spike spikes; trace of the spiking element with the largest trace, or the
    largest trace when nothing spikes."""
    if spk.any():
        return True, float(trc[spk].max())
    return False, float(trc.max())


def maxpool_ref(spikes, trace, kernel, stride, padding, ceil_mode=False):
    """Spike max-pooling reference (padding never selected), returns (bool, float) arrays."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    batch, channels, height, width = spikes.shape

    def out_len(n, k, s, p):
        num = n + 2 * p - k
        length = (-(-num // s) if ceil_mode else num // s) + 1
        # torch: the last window must start inside the image or the left padding
        if ceil_mode and (length - 1) * s >= n + p:
            length -= 1
        return length

    h_out, w_out = out_len(height, kh, sh, ph), out_len(width, kw, sw, pw)
    out_s = np.zeros((batch, channels, h_out, w_out), dtype=bool)
    out_t = np.zeros((batch, channels, h_out, w_out))
    for b in range(batch):
        for c in range(channels):
            for h in range(h_out):
                for w in range(w_out):
                    r0, c0 = h * sh - ph, w * sw - pw
                    rows = slice(max(r0, 0), min(r0 + kh, height))
                    cols = slice(max(c0, 0), min(c0 + kw, width))
                    out_s[b, c, h, w], out_t[b, c, h, w] = _select(
                        spikes[b, c, rows, cols], trace[b, c, rows, cols]
                    )
    return out_s, out_t


def adaptive_maxpool_ref(spikes, trace, output_size):
    """Adaptive spike max-pooling reference: window [floor(i·H/h), ceil((i+1)·H/h))."""
    batch, channels, height, width = spikes.shape
    oh, ow = output_size
    out_s = np.zeros((batch, channels, oh, ow), dtype=bool)
    out_t = np.zeros((batch, channels, oh, ow))
    for b in range(batch):
        for c in range(channels):
            for h in range(oh):
                for w in range(ow):
                    rows = slice((h * height) // oh, -(-((h + 1) * height) // oh))
                    cols = slice((w * width) // ow, -(-((w + 1) * width) // ow))
                    out_s[b, c, h, w], out_t[b, c, h, w] = _select(
                        spikes[b, c, rows, cols], trace[b, c, rows, cols]
                    )
    return out_s, out_t


def dyadic(rng: np.random.Generator, shape, low: int = -16, high: int = 16, denom: int = 16):
    """Random multiples of ``1/denom`` in ``[low/denom, high/denom]``: sums of these are exact."""
    return rng.integers(low, high + 1, size=shape) / denom
