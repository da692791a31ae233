"""Per-prompt reward history with bounded memory and batched kernel-weighted lookups.

KAE needs, for every prompt ``x`` in the batch at step ``i``, kernel-weighted sums
over that prompt's past rewards ``{(I_j, Z_j)}``:

    sum_j K(u_j) Z_j,   sum_j K(u_j),   ...

with the scaled distance ``u_j`` read one of two ways (``window``):

* ``"relative"`` (the paper's formula as summarised): ``u_j = (i - I_j)/(i h)``,
  a window of ``i h`` steps that widens as training proceeds;
* ``"absolute"``: ``u_j = (i - I_j)/h``, a fixed window of ``h`` steps (the
  reading under which "h ~ 10" means about one J-block of the schedule).

Layout
------
The kernel weight depends on a past reward only through its step ``I_j``, so
the rewards a prompt received at one step are stored as one *record*
``(step, n, sum Z, sum Z^2)``. This is exact for every statistic KAE and its
variants need (weighted counts, sums, second moments, step moments), and
divides memory and lookup work by the group size ``G``.

Records live in a structure of arrays ``(n_slots, cap)`` (one row per prompt,
a ring buffer in chronological order), so a batch lookup is a gather of
``(n_prompts_in_batch, cap)`` cells and a few vectorised reductions, done in
row blocks of about 8192 cells so that every temporary stays small; appending
a step writes one record per prompt (``O(1)`` amortised: rows and ``cap`` grow by
doubling). Before writing, the batch's rows are checked for dead records: the
oldest record of each row first, and only rows where it died are scanned.
Empty cells hold ``n = 0`` so they contribute exactly zero.

Why no prefix sums? For a polynomial kernel the window sums could come from
per-row cumulative moment sums in ``O(log cap)`` per prompt. Measured
(2 cores, load ~4): a lookup at 1.4e5 rewards goes from 0.14 to 0.08 ms and at
2e6 from 1.0 to 0.11 ms, for twice the memory, one more state to keep exact
across resumes, and results no longer bit-identical to the direct sums; the
whole step (compute + update) is 0.5 ms at the paper's scale, so it does not pay.

Bounded memory
--------------
*Dead records.* Let ``tau`` be the distance beyond which the kernel is zero:
its support for a compact kernel; for the gaussian and exponential kernels the
point where ``K`` underflows to exactly 0 (``Kernel.tail_bound()``: 38.6 and
744), or, with ``min_weight > 0``, where ``K`` falls to ``min_weight * K(0)``
(the lookups then use the kernel truncated there). ``u_j`` never decreases as
steps go on -- absolute: ``(i - I_j)/h`` grows with ``i``; relative:
``(1 - I_j/i)/h`` grows with ``i`` -- and steps never go backwards, so a record
with ``u_j > tau`` now has weight zero at every later step and is dropped (with
a ``1e-9`` relative margin so float rounding can never drop a record whose
weight would still be nonzero). This never changes any result (the tests check
it against an unbounded history). In the relative reading ``u_j < 1/h``, so
records die only when ``tau h < 1``; in the absolute reading a record dies
``tau h`` steps after it was written, whatever the kernel.

*Cap per prompt.* The relative window spans ``i h`` steps, which grows with
``i``, and with ``tau h >= 1`` nothing dies. So each prompt also keeps at most
``max_per_prompt`` records (distinct steps), dropping the oldest first -- for
the monotone kernels here, the ones with the smallest weight. A prompt holds
about ``i h f`` live records (relative; ``h f`` absolute), ``f`` the share of
steps that serve it (``J / steps_per_epoch`` under the paper's schedule); at the
paper's 200-500 steps the default 512 cannot bind (``i h <= 100``). Where it
binds, KAE's sums lose the oldest, least weighted records of the window
(``dropped_capped`` counts them).

*Cap on prompts.* At most ``max_prompts`` prompts are held: when new prompts
would exceed it, the prompts updated longest ago are forgotten first
(``evicted_prompts`` counts them; a forgotten prompt that returns starts a new
history). A single step with more distinct prompts than ``max_prompts`` is
refused. Prompts whose records all died are forgotten at the periodic sweep,
and the arrays shrink when they are mostly empty.

So the arrays never exceed ``max_prompts * (32 * max_per_prompt + 16)`` bytes
(defaults: 65536 prompts x 512 records, 1.0 GiB, reached only if every prompt
held 512 live steps; the paper's regime needs a few MiB), plus Python's key
index (about 100-200 bytes per prompt).

Examples
--------
>>> import numpy as np
>>> from kernelvalue.advantage import RewardHistory
>>> h = RewardHistory("triangular", bandwidth=1.0)
>>> h.append(["a"], counts=[2], sums=[1.0], sumsq=[1.0], step=1)
>>> float(h.lookup(["a"], step=2)["w0"][0])   # K((2-1)/(2*1.0)) * 2 = 0.5 * 2
1.0
>>> float(h.lookup(["a"], step=2, bandwidth=0.5)["wz"][0])   # K(1) * 1.0 = 0
0.0
>>> ha = RewardHistory("triangular", bandwidth=4.0, window="absolute")
>>> ha.append(["a"], counts=[2], sums=[1.0], sumsq=[1.0], step=1)
>>> float(ha.lookup(["a"], step=3)["w0"][0])   # K((3-1)/4) * 2 = 0.5 * 2
1.0
"""

from __future__ import annotations

import math

import numpy as np

from ..kernels import get_kernel
from .base import (
    StateReader,
    check_choice,
    check_optional_positive_int,
    check_positive,
    check_positive_int,
    check_unit,
    drop_rows,
    grown_rows,
    key_rows,
    rows_to_evict,
)

__all__ = ["RewardHistory", "MOMENTS", "WINDOWS"]

# Names of the kernel-weighted sums lookup() can return; d = -u (d = (I_j - i)/(i h) relative).
MOMENTS = {
    "w0": "sum_j w_j n_j (weighted count)",
    "wz": "sum_j w_j s_j (weighted reward sum)",
    "wzz": "sum_j w_j ss_j (weighted sum of squared rewards)",
    "w2": "sum_j w_j^2 n_j (for the effective sample size)",
    "wd": "sum_j w_j n_j d_j",
    "wdd": "sum_j w_j n_j d_j^2",
    "wdz": "sum_j w_j s_j d_j",
}

# The two readings of the bandwidth: u = (i - I)/(i h) or u = (i - I)/h.
WINDOWS = ("relative", "absolute")

# Relative margin on the death test: a record is dropped only when its scaled
# distance exceeds the support by far more than float rounding (~1e-16).
_DEATH_MARGIN = 1e-9

_ARRAYS = ("_step", "_n", "_s", "_ss", "_head", "_len")

# Cells per lookup block (8192 float64 = 64 KiB per temporary).
_BLOCK = 8192


class RewardHistory:
    """Per-prompt store of past rewards, aggregated by step.

    Parameters
    ----------
    kernel : str or Kernel, default "triangular"
        Kernel of the lookups (``kernelvalue.kernels.get_kernel``).
    bandwidth : float, default 0.2
        Bandwidth ``h`` of lookups (relative or in steps, see ``window``), and
        the largest one the dead-record rule must keep valid (lookups with a
        larger ``h`` would miss dropped records, so they are refused).
    max_per_prompt : int or None, default 512
        Most records (distinct steps) kept per prompt; ``None`` = no cap.
    sweep_every : int, default 16
        Every this many appended steps all prompts (not just the batch's) are
        pruned, prompts with no live record forgotten and the arrays shrunk.
    window : {"relative", "absolute"}, default "relative"
        ``u = (i - I)/(i h)`` (window of ``i h`` steps) or ``u = (i - I)/h``
        (window of ``h`` steps).
    max_prompts : int or None, default 65536
        Most prompts held; beyond it the least recently updated are forgotten.
        ``None`` = no bound.
    min_weight : float in [0, 1), default 0
        Infinite-support kernels only: weights below ``min_weight * K(0)`` are
        set to zero (the kernel is truncated where it falls to that level), so
        records that far back are dropped. ``0`` truncates only where ``K``
        underflows to exactly 0, which changes no result.

    Attributes
    ----------
    n_records : int
        Records held (one per prompt and step).
    n_entries : int
        Rewards represented (sum of the records' counts).
    nbytes : int
        Bytes held by the arrays.
    dropped_capped : int
        Records the cap dropped while their weight could still be nonzero.
    evicted_prompts : int
        Prompts forgotten by the ``max_prompts`` bound.

    Examples
    --------
    >>> h = RewardHistory("triangular", bandwidth=1.0)
    >>> h.append([7, 9], counts=[4, 4], sums=[3.0, 1.0], sumsq=[3.0, 1.0], step=1)
    >>> h.lookup([9, 7, 8], step=2)["wz"]     # K((2-1)/(2*1)) = 0.5 times the sums; 8 is unknown
    array([0.5, 1.5, 0. ])
    >>> h.n_records
    2
    """

    def __init__(
        self,
        kernel="triangular",
        bandwidth=0.2,
        max_per_prompt=512,
        sweep_every=16,
        *,
        window="relative",
        max_prompts=65536,
        min_weight=0.0,
    ):
        self.kernel = get_kernel(kernel)
        self.bandwidth = check_positive("bandwidth", bandwidth)
        self.max_per_prompt = check_optional_positive_int("max_per_prompt", max_per_prompt)
        self.sweep_every = check_positive_int("sweep_every", sweep_every)
        self.window = check_choice("window", window, WINDOWS)
        self.max_prompts = check_optional_positive_int("max_prompts", max_prompts)
        self.min_weight = check_unit("min_weight", min_weight, open_high=True)
        # Scaled distance beyond which the (possibly truncated) kernel is zero.
        self._tau = float(self.kernel.support if self.kernel.compact else self.kernel.tail_bound(self.min_weight))
        self._reset(cap=self._min_cap)

    @property
    def _min_cap(self) -> int:
        # Rows start (and shrink back) to 4 records, never past the cap: a cap of 1-3 must bind.
        return 4 if self.max_per_prompt is None else min(4, self.max_per_prompt)

    def _reset(self, cap, rows=8):
        self._index: dict = {}
        self._keys: list = []
        self._cap = cap
        self._step = np.zeros((rows, cap), dtype=np.int64)
        self._n = np.zeros((rows, cap))
        self._s = np.zeros((rows, cap))
        self._ss = np.zeros((rows, cap))
        self._head = np.zeros(rows, dtype=np.int64)
        self._len = np.zeros(rows, dtype=np.int64)
        self._last_step = 0
        self._last_sweep = 0
        self._dropped_capped = 0
        self._evicted = 0

    # ------------------------------------------------------------------ sizes
    @property
    def n_prompts(self) -> int:
        return len(self._keys)

    @property
    def n_records(self) -> int:
        return int(self._len[: len(self._keys)].sum())

    @property
    def n_entries(self) -> int:
        return int(round(float(self._n[: len(self._keys)].sum())))

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, a).nbytes for a in _ARRAYS)

    @property
    def dropped_capped(self) -> int:
        """Records dropped by the ``max_per_prompt`` cap (not by the dead-record rule) so far."""
        return self._dropped_capped

    @property
    def evicted_prompts(self) -> int:
        """Prompts forgotten by the ``max_prompts`` bound so far."""
        return self._evicted

    @property
    def capacity(self) -> int:
        """Current per-prompt row capacity (records)."""
        return self._cap

    def __len__(self) -> int:
        return self.n_entries

    def __contains__(self, key) -> bool:
        return key in self._index

    # ------------------------------------------------------------------ slots
    def slots(self, keys, create=False) -> np.ndarray:
        """Row of each key (``-1`` where unknown, unless ``create``)."""
        out = key_rows(self._index, self._keys, keys, create)
        if create and len(self._keys) > self._step.shape[0]:
            self._grow_rows(len(self._keys))
        return out

    def _grow_rows(self, needed):
        rows = grown_rows(self._step.shape[0], needed, self.max_prompts)
        extra = rows - self._step.shape[0]
        for name in _ARRAYS:
            old = getattr(self, name)
            setattr(self, name, np.concatenate([old, np.zeros((extra,) + old.shape[1:], old.dtype)]))

    def _relayout(self, new_cap):
        # Rows re-laid in chronological order from column 0 (head = 0).
        rows = self._step.shape[0]
        k = min(new_cap, self._cap)
        cols = (self._head[:, None] + np.arange(k)[None, :]) % self._cap
        r = np.arange(rows)[:, None]
        for name in ("_step", "_n", "_s", "_ss"):
            old = getattr(self, name)
            new = np.zeros((rows, new_cap), dtype=old.dtype)
            new[:, :k] = old[r, cols]
            setattr(self, name, new)
        self._head = np.zeros(rows, dtype=np.int64)
        self._cap = new_cap

    def _drop_rows(self, drop):
        """Forget the prompts in rows ``drop`` (:func:`~kernelvalue.advantage.base.drop_rows`)."""
        arrays = drop_rows(self._index, self._keys, [getattr(self, a) for a in _ARRAYS], drop)
        for name, arr in zip(_ARRAYS, arrays):
            setattr(self, name, arr)

    # ------------------------------------------------------------------ pruning
    def _cutoff_u(self, bandwidth) -> float:
        """Scaled distance beyond which a record is dead forever (inf: never)."""
        if not math.isfinite(self._tau) or (self.window == "relative" and self._tau * bandwidth >= 1.0):
            return math.inf
        return self._tau * (1.0 + _DEATH_MARGIN)

    def prune(self, step: int, rows=None) -> int:
        """Drop records whose weight is zero at ``step`` and every later step.

        Returns the number of records dropped. ``rows=None`` prunes every prompt.
        """
        thr = self._cutoff_u(self.bandwidth)
        if not math.isfinite(thr):
            return 0
        if rows is None:
            rows = np.arange(len(self._keys))
        # u > thr  <=>  I < step - thr * (window in steps): compare the stored steps directly.
        limit = step - thr * (step * self.bandwidth if self.window == "relative" else self.bandwidth)
        # Rows are chronological, so dead records form a prefix: only rows whose oldest record is dead need a scan.
        rows = rows[(self._len[rows] > 0) & (self._step[rows, self._head[rows]] < limit)]
        if rows.size == 0:
            return 0
        dead = (self._n[rows] > 0) & (self._step[rows] < limit)
        n_dead = dead.sum(axis=1)
        for arr in (self._n, self._s, self._ss):
            sub = arr[rows]
            sub[dead] = 0.0
            arr[rows] = sub
        self._head[rows] = (self._head[rows] + n_dead) % self._cap
        self._len[rows] -= n_dead
        return int(n_dead.sum())

    def _sweep(self, step):
        self.prune(step)
        self._drop_rows(np.flatnonzero(self._len[: len(self._keys)] == 0))
        longest = int(self._len[: len(self._keys)].max()) if self._keys else 0
        if self._cap > 4 and longest <= self._cap // 4:
            self._relayout(max(self._min_cap, self._cap // 2))
        self._last_sweep = step

    def _last_steps(self) -> np.ndarray:
        """Step of each prompt's newest record (-1 for a prompt whose records all died)."""
        p = len(self._keys)
        last = self._step[np.arange(p), (self._head[:p] + self._len[:p] - 1) % self._cap]
        return np.where(self._len[:p] > 0, last, -1)

    def _make_room(self, keys):
        """Forget the least recently updated prompts not in ``keys`` so that ``keys`` fit in ``max_prompts``."""
        drop = rows_to_evict(self._index, self._keys, keys, self._last_steps(), self.max_prompts)
        self._drop_rows(drop)
        self._evicted += int(drop.size)

    # ------------------------------------------------------------------ append
    def append(self, keys, counts, sums, sumsq, step) -> None:
        """Record one step's rewards: per distinct key, the count, sum and sum of squares.

        Parameters
        ----------
        keys : list of hashables, distinct
        counts, sums, sumsq : array-like, shape (len(keys),)
        step : int
            Must not be smaller than the last appended step; appending the same
            step again adds to that step's records.
        """
        step = int(step)
        if step < self._last_step:
            raise ValueError(f"step={step} goes backwards (history already holds step {self._last_step}).")
        counts = np.asarray(counts, dtype=np.float64).reshape(-1)
        sums = np.asarray(sums, dtype=np.float64).reshape(-1)
        sumsq = np.asarray(sumsq, dtype=np.float64).reshape(-1)
        if not (counts.shape[0] == sums.shape[0] == sumsq.shape[0] == len(keys)):
            raise ValueError("keys, counts, sums and sumsq must have the same length.")
        if not np.all(counts >= 1):
            raise ValueError("counts must be >= 1 for every key appended.")
        if not (np.all(np.isfinite(sums)) and np.all(np.isfinite(sumsq)) and np.all(np.isfinite(counts))):
            raise ValueError("counts, sums and sumsq must be finite; nothing was recorded.")
        if self.max_prompts is not None:
            self._make_room(keys)
        rows = self.slots(keys, create=True)
        self.prune(step, rows)
        cap = self._cap
        head, length = self._head[rows], self._len[rows]
        last = (head + length - 1) % cap
        merge = (length > 0) & (self._step[rows, last] == step)
        new = ~merge
        if merge.any():
            r, c = rows[merge], last[merge]
            self._n[r, c] += counts[merge]
            self._s[r, c] += sums[merge]
            self._ss[r, c] += sumsq[merge]
        if new.any():
            rn = rows[new]
            full = self._len[rn] >= self._cap
            if full.any() and (self.max_per_prompt is None or self._cap < self.max_per_prompt):
                target = 2 * self._cap if self.max_per_prompt is None else min(2 * self._cap, self.max_per_prompt)
                self._relayout(target)
            full = self._len[rn] >= self._cap
            if full.any():  # the cap binds: the oldest record of those prompts goes
                rf = rn[full]
                hf = self._head[rf]
                for arr in (self._n, self._s, self._ss):
                    arr[rf, hf] = 0.0
                self._head[rf] = (hf + 1) % self._cap
                self._len[rf] -= 1
                self._dropped_capped += int(rf.size)
            pos = (self._head[rn] + self._len[rn]) % self._cap
            self._step[rn, pos] = step
            self._n[rn, pos] = counts[new]
            self._s[rn, pos] = sums[new]
            self._ss[rn, pos] = sumsq[new]
            self._len[rn] += 1
        self._last_step = step
        if step - self._last_sweep >= self.sweep_every:
            self._sweep(step)

    # ------------------------------------------------------------------ lookup
    def lookup(self, keys=None, step=None, bandwidth=None, moments=("w0", "wz"), rows=None) -> dict:
        """Kernel-weighted sums over each key's history at ``step``.

        Parameters
        ----------
        keys : list of hashables
            Prompts to look up (unknown ones get zeros). Or pass ``rows`` from
            :meth:`slots` instead.
        step : int
            The current step ``i``; weights are ``K((i - I_j)/(i h))``
            (relative window) or ``K((i - I_j)/h)`` (absolute).
        bandwidth : float or array (H,), optional
            Defaults to the history's ``bandwidth``; must not exceed it when the
            dead-record rule is active (dropped records would be missed). An
            array gives results of shape ``(m, H)``.
        moments : tuple of str
            Which sums (see :data:`MOMENTS`).

        Returns
        -------
        dict of name -> ndarray (m,) or (m, H)
        """
        if step is None:
            raise TypeError("lookup needs step=... (the current training step i).")
        h = self.bandwidth if bandwidth is None else np.asarray(bandwidth, dtype=np.float64)
        multi = np.ndim(h) > 0
        if np.any(np.asarray(h) <= 0) or not np.all(np.isfinite(h)):
            raise ValueError(f"bandwidth must be finite and > 0, got {bandwidth!r}.")
        if math.isfinite(self._cutoff_u(self.bandwidth)) and np.max(h) > self.bandwidth * (1 + 1e-12):
            raise ValueError(
                f"bandwidth={np.max(h)} exceeds the history's bandwidth={self.bandwidth}: records outside the "
                "smaller window were already dropped. Build the RewardHistory with the largest bandwidth you use."
            )
        bad = set(moments) - set(MOMENTS)
        if bad:
            raise ValueError(f"unknown moments {sorted(bad)}; choose from {sorted(MOMENTS)}.")
        if rows is None:
            rows = self.slots(keys)
        m = rows.shape[0]
        shape = (m, np.size(h)) if multi else (m,)
        out = {name: np.zeros(shape) for name in moments}
        known = rows >= 0
        if not known.any():
            return out
        r = rows[known] if not known.all() else rows
        # Row blocks of about _BLOCK cells: every temporary stays small (in cache, and below
        # malloc's mmap threshold, so no page faults per call); a block row's sums do not
        # depend on the blocking.
        per_row = self._cap * (np.size(h) if multi else 1)
        step_rows = max(1, _BLOCK // per_row)
        res = {name: np.empty((r.shape[0],) + shape[1:]) for name in moments}
        for lo in range(0, r.shape[0], step_rows):
            block = self._block_sums(r[lo : lo + step_rows], step, h, multi, moments)
            for name in moments:
                res[name][lo : lo + step_rows] = block[name]
        for name in moments:
            if known.all():
                out[name] = res[name]
            else:
                out[name][known] = res[name]
        return out

    def _block_sums(self, r, step, h, multi, moments) -> dict:
        n = self._n[r]
        # relative: (i - I)/i, still to divide by h; absolute: i - I
        dist = (step - self._step[r]) / step if self.window == "relative" else (step - self._step[r]).astype(np.float64)
        if multi:
            u = dist[:, :, None] / h[None, None, :]
        else:
            u = dist / h
        w = self._weights(u)
        if multi:
            # (m, cap, H) weights against (m, cap) data: contract the record axis.
            def wsum(weights, data):
                return np.einsum("mch,mc->mh", weights, data)

        else:

            def wsum(weights, data):
                return (weights * data).sum(axis=1)

        res = {}
        for name in moments:
            if name == "w0":
                val = wsum(w, n)
            elif name == "wz":
                val = wsum(w, self._s[r])
            elif name == "wzz":
                val = wsum(w, self._ss[r])
            elif name == "w2":
                val = wsum(w * w, n)
            elif name == "wd":
                val = -wsum(w * u, n)
            elif name == "wdd":
                val = wsum(w * u * u, n)
            else:  # wdz
                val = -wsum(w * u, self._s[r])
            res[name] = val
        return res

    def _weights(self, u):
        """``K(u)`` for ``u >= 0``, truncated at ``tau`` for an infinite-support kernel with
        ``min_weight > 0``. Compact kernels' profiles are zero outside their support
        already, so the whole block is evaluated without a mask."""
        w = self.kernel(u)
        if self.min_weight > 0 and not self.kernel.compact:
            w[u > self._tau] = 0.0
        return w

    def records(self, key) -> np.ndarray:
        """One prompt's records in chronological order: array (k, 4) of
        ``(step, n, sum Z, sum Z^2)`` (empty for an unknown key)."""
        row = self._index.get(key)
        if row is None:
            return np.zeros((0, 4))
        k = int(self._len[row])
        cols = (self._head[row] + np.arange(k)) % self._cap
        return np.stack([self._step[row, cols].astype(np.float64), self._n[row, cols], self._s[row, cols], self._ss[row, cols]], axis=1)

    def keys(self) -> list:
        """The prompts currently held."""
        return list(self._keys)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        """Exact, picklable state (the raw layout, so sums after a resume are bit-identical)."""
        p = len(self._keys)
        return {
            "kernel": self.kernel.name,
            "bandwidth": self.bandwidth,
            "window": self.window,
            "min_weight": self.min_weight,
            "max_per_prompt": self.max_per_prompt,
            "max_prompts": self.max_prompts,
            "sweep_every": self.sweep_every,
            "keys": list(self._keys),
            "cap": self._cap,
            "step": self._step[:p].copy(),
            "n": self._n[:p].copy(),
            "s": self._s[:p].copy(),
            "ss": self._ss[:p].copy(),
            "head": self._head[:p].copy(),
            "len": self._len[:p].copy(),
            "rows": int(self._step.shape[0]),
            "last_step": self._last_step,
            "last_sweep": self._last_sweep,
            "dropped_capped": self._dropped_capped,
            "evicted_prompts": self._evicted,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` output, all or nothing.

        The kernel, bandwidth, window and ``min_weight`` must match (they fix
        which records were dropped); ``max_per_prompt``, ``max_prompts`` and
        ``sweep_every`` are taken from the state. Every field is checked first
        (types, shapes, ranges, no NaN or inf, empty cells empty, records in
        chronological order); a ValueError names the first bad field and
        leaves this history unchanged.
        """
        self.__dict__.update(self._read_state(StateReader(state, "history state")))

    def _read_state(self, rd: StateReader) -> dict:
        """Validated attributes of a saved state (nothing is changed here)."""
        saved = {k: rd.get(k) for k in ("kernel", "bandwidth", "window", "min_weight")}
        mine = {"kernel": self.kernel.name, "bandwidth": self.bandwidth, "window": self.window, "min_weight": self.min_weight}
        if saved != mine:
            raise ValueError(
                f"history state was saved with {saved}; this history uses {mine}. Build it with the same ones."
            )
        max_per_prompt = rd.get("max_per_prompt")
        max_prompts = rd.get("max_prompts")
        max_per_prompt = None if max_per_prompt is None else rd.int("max_per_prompt", lo=1)
        max_prompts = None if max_prompts is None else rd.int("max_prompts", lo=1)
        keys = rd.keys("keys")
        p = len(keys)
        if max_prompts is not None and p > max_prompts:
            raise ValueError(f"history state holds {p} prompts, more than its max_prompts={max_prompts}.")
        cap = rd.int("cap", lo=1, hi=max_per_prompt)
        rows = rd.int("rows", lo=max(p, 1))
        last_step = rd.int("last_step", lo=0)
        head = rd.array("head", (p,), integer=True, lo=0)
        length = rd.array("len", (p,), integer=True, lo=0)
        if np.any(head >= cap) or np.any(length > cap):
            raise ValueError("history state['head'] or ['len'] points outside the rows; the state is corrupt.")
        step = rd.array("step", (p, cap), integer=True)
        n = rd.array("n", (p, cap), lo=0.0)
        s = rd.array("s", (p, cap))
        ss = rd.array("ss", (p, cap), lo=0.0)
        order = (np.arange(cap)[None, :] - head[:, None]) % cap  # position of each cell from the head
        live = order < length[:, None]
        if np.any(n[~live]) or np.any(s[~live]) or np.any(ss[~live]):
            raise ValueError("history state has data in cells outside the live records; the state is corrupt.")
        if np.any(n[live] < 1):
            raise ValueError("history state has a record with count n < 1; the state is corrupt.")
        chrono = np.take_along_axis(step, (head[:, None] + np.arange(cap)[None, :]) % cap, axis=1)
        inside = np.arange(cap)[None, :] < length[:, None]
        if np.any(chrono[inside] < 1) or np.any(chrono[inside] > last_step):
            raise ValueError(f"history state has record steps outside [1, last_step={last_step}]; the state is corrupt.")
        if np.any((np.diff(chrono, axis=1) <= 0) & inside[:, 1:]):
            raise ValueError("history state has records out of chronological order; the state is corrupt.")
        staged = {
            "max_per_prompt": max_per_prompt,
            "max_prompts": max_prompts,
            "sweep_every": rd.int("sweep_every", lo=1),
            "_keys": keys,
            "_index": {k: i for i, k in enumerate(keys)},
            "_cap": cap,
            "_last_step": last_step,
            "_last_sweep": rd.int("last_sweep", lo=0, hi=last_step),
            "_dropped_capped": rd.int("dropped_capped", lo=0),
            "_evicted": rd.int("evicted_prompts", lo=0),
        }
        for name, data in (("_step", step), ("_n", n), ("_s", s), ("_ss", ss), ("_head", head), ("_len", length)):
            arr = np.zeros((rows,) + data.shape[1:], dtype=data.dtype)
            arr[:p] = data
            staged[name] = arr
        return staged

    def __repr__(self) -> str:
        return (
            f"RewardHistory(kernel={self.kernel.name!r}, bandwidth={self.bandwidth}, window={self.window!r}, "
            f"prompts={self.n_prompts}, records={self.n_records}, entries={self.n_entries})"
        )
